package alert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"sigs.k8s.io/yaml"
)

// Defaults, taken from Alertmanager's route defaults where they exist so
// that an operator who knows one knows the other.
const (
	// DefaultGroupWait is how long a new group collects findings before its
	// first message: long enough to fold a burst into one digest, short
	// enough that an attack is seen within the minute.
	DefaultGroupWait = 30 * time.Second
	// DefaultGroupInterval is the pause between two messages of one group.
	DefaultGroupInterval = 5 * time.Minute
	// DefaultRepeatInterval is the cooldown: a finding with the same
	// (cluster, detector, principal, object) is reported again, with its
	// occurrence count, only after this long.
	DefaultRepeatInterval = 4 * time.Hour
	// DefaultResolveTimeout sets an Alertmanager alert's endsAt: findings are
	// point events that never resolve by themselves, so each alert stays
	// active this long after it was last sent.
	DefaultResolveTimeout = 5 * time.Minute
	// DefaultQueueSize is each receiver's queue, in messages (digests, not
	// findings). A message per group_interval per group makes 1024 hours of
	// outage for a handful of groups.
	DefaultQueueSize = 1024
	// DefaultIntakeSize is how many Notify batches wait for the dispatcher.
	// The dispatcher only groups in memory, so this only fills when the
	// process is starved of CPU.
	DefaultIntakeSize = 1024
	// DefaultMaxPending bounds the distinct cooldown keys held in memory
	// across all groups; beyond it new keys are dropped and counted.
	DefaultMaxPending = 10000
	// DefaultStateMaxIDs bounds the finding ids the send log remembers.
	DefaultStateMaxIDs = 50000
	// DefaultShutdownTimeout bounds Stop's final flush.
	DefaultShutdownTimeout = 10 * time.Second
)

// Config is the alerting configuration: a routing tree over finding labels
// and the receivers it names.
type Config struct {
	// GrafanaURL is the base URL of Grafana; messages link to the finding
	// in the auditpipe-explorer dashboard. Optional.
	GrafanaURL string `json:"grafana_url"`
	// StateFile persists what was sent (finding ids and cooldown keys), so
	// a restarted detect does not report findings again. Optional.
	StateFile string `json:"state_file"`
	// StateMaxIDs bounds the finding ids kept in the state file.
	StateMaxIDs int `json:"state_max_ids"`
	// QueueSize is each receiver's queue of messages.
	QueueSize int `json:"queue_size"`
	// IntakeSize is how many Notify calls may wait for the dispatcher.
	IntakeSize int `json:"intake_size"`
	// MaxPending bounds the cooldown keys held in memory.
	MaxPending int `json:"max_pending"`
	// ShutdownTimeout bounds Stop's flush.
	ShutdownTimeout Duration `json:"shutdown_timeout"`
	// Retry bounds delivery retries.
	Retry RetryConfig `json:"retry"`
	// Route is the root of the routing tree.
	Route *RouteConfig `json:"route"`
	// Receivers are the destinations routes name.
	Receivers []ReceiverConfig `json:"receivers"`

	// Stdout is where stdout receivers write; os.Stdout when nil.
	Stdout io.Writer `json:"-"`
	// HTTPClient sends every HTTP request; a client with a 10s timeout when
	// nil.
	HTTPClient *http.Client `json:"-"`
}

// RetryConfig bounds the exponential backoff between delivery attempts.
type RetryConfig struct {
	// MinBackoff is the first wait. Default 1s.
	MinBackoff Duration `json:"min_backoff"`
	// MaxBackoff caps each wait (a Retry-After above it is still honoured
	// up to MaxElapsed). Default 1m.
	MaxBackoff Duration `json:"max_backoff"`
	// MaxElapsed is how long one message is retried before it is counted as
	// failed. Default 30m: a receiver down for that long loses nothing.
	MaxElapsed Duration `json:"max_elapsed"`
}

// RouteConfig is one node of the routing tree. Unset options are inherited
// from the parent, as in Alertmanager.
type RouteConfig struct {
	// Receiver names the receiver of findings this route matches.
	Receiver string `json:"receiver"`
	// Matchers select findings, all of which must match: label=value,
	// label!=value, label=~regex, label!~regex (anchored), severity>=high.
	Matchers []string `json:"matchers"`
	// Continue lets the next sibling routes match too (fan-out).
	Continue bool `json:"continue"`
	// GroupBy names the labels whose values split findings into separate
	// messages. Empty: one digest per route.
	GroupBy []string `json:"group_by"`
	// GroupWait, GroupInterval and RepeatInterval: see the Default consts.
	GroupWait      *Duration `json:"group_wait"`
	GroupInterval  *Duration `json:"group_interval"`
	RepeatInterval *Duration `json:"repeat_interval"`
	// Routes are the children, tried in order.
	Routes []*RouteConfig `json:"routes"`
}

// ReceiverConfig names one destination; at most one kind is set. A receiver
// with none discards what is routed to it, as in Alertmanager: the way to
// send nothing for findings no child route matches.
type ReceiverConfig struct {
	Name         string              `json:"name"`
	Slack        *SlackConfig        `json:"slack"`
	Alertmanager *AlertmanagerConfig `json:"alertmanager"`
	Webhook      *WebhookConfig      `json:"webhook"`
	Stdout       *StdoutConfig       `json:"stdout"`
}

// SlackConfig posts Block Kit messages to an incoming webhook. The webhook
// URL is a credential, so it is read from a file or the environment, never
// written in the configuration.
type SlackConfig struct {
	WebhookURLFile string `json:"webhook_url_file"`
	WebhookURLEnv  string `json:"webhook_url_env"`
	// Channel overrides the webhook's default channel. Optional.
	Channel string `json:"channel"`
	// WebhookURL is the resolved URL; set by code (Simple) or resolved from
	// the file or variable by New.
	WebhookURL Secret `json:"-"`
}

// AlertmanagerConfig posts alerts to Alertmanager's API v2.
type AlertmanagerConfig struct {
	// URL is Alertmanager's base URL, e.g. http://alertmanager:9093.
	URL string `json:"url"`
	// ResolveTimeout: see DefaultResolveTimeout.
	ResolveTimeout Duration `json:"resolve_timeout"`
}

// WebhookConfig posts the findings as generic JSON.
type WebhookConfig struct {
	URL string `json:"url"`
}

// StdoutConfig prints one line per alert. It has no options yet.
type StdoutConfig struct{}

// Duration is the duration type every config file shares, written as
// "30s" in YAML.
type Duration = config.Duration

func dur(d time.Duration) *Duration { v := Duration(d); return &v }

// DefaultConfig prints every finding to stdout: what detect does when no
// alerting is configured.
func DefaultConfig() Config {
	c := Config{
		Route:     &RouteConfig{Receiver: "stdout"},
		Receivers: []ReceiverConfig{{Name: "stdout", Stdout: &StdoutConfig{}}},
	}
	c = c.WithDefaults()
	return c
}

// WithDefaults returns c with unset fields set to their defaults. The top
// route and the receivers it changes are copied, never modified in place.
func (c Config) WithDefaults() Config {
	if c.StateMaxIDs == 0 {
		c.StateMaxIDs = DefaultStateMaxIDs
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.IntakeSize == 0 {
		c.IntakeSize = DefaultIntakeSize
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.Retry.MinBackoff == 0 {
		c.Retry.MinBackoff = Duration(time.Second)
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = Duration(time.Minute)
	}
	if c.Retry.MaxElapsed == 0 {
		c.Retry.MaxElapsed = Duration(30 * time.Minute)
	}
	if c.Route == nil && len(c.Receivers) == 0 {
		c.Route = &RouteConfig{Receiver: "stdout"}
		c.Receivers = []ReceiverConfig{{Name: "stdout", Stdout: &StdoutConfig{}}}
	}
	if c.Route != nil {
		r := *c.Route
		if r.GroupWait == nil {
			r.GroupWait = dur(DefaultGroupWait)
		}
		if r.GroupInterval == nil {
			r.GroupInterval = dur(DefaultGroupInterval)
		}
		if r.RepeatInterval == nil {
			r.RepeatInterval = dur(DefaultRepeatInterval)
		}
		c.Route = &r
	}
	c.Receivers = slices.Clone(c.Receivers)
	for i := range c.Receivers {
		if am := c.Receivers[i].Alertmanager; am != nil && am.ResolveTimeout == 0 {
			a := *am
			a.ResolveTimeout = Duration(DefaultResolveTimeout)
			c.Receivers[i].Alertmanager = &a
		}
	}
	return c
}

// Validate reports every problem in c, each naming its key. It expects
// defaults to be applied (ParseConfig and New do that).
func (c Config) Validate() error {
	var errs []error
	if c.GrafanaURL != "" {
		errs = append(errs, validateURL("grafana_url", c.GrafanaURL))
	}
	positive := func(key string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", key))
		}
	}
	positive("state_max_ids", c.StateMaxIDs)
	positive("queue_size", c.QueueSize)
	positive("intake_size", c.IntakeSize)
	positive("max_pending", c.MaxPending)
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout must be positive"))
	}
	if c.Retry.MinBackoff <= 0 {
		errs = append(errs, errors.New("retry.min_backoff must be positive"))
	}
	if c.Retry.MaxBackoff < c.Retry.MinBackoff {
		errs = append(errs, errors.New("retry.max_backoff must be at least retry.min_backoff"))
	}
	if c.Retry.MaxElapsed <= 0 {
		errs = append(errs, errors.New("retry.max_elapsed must be positive"))
	}

	names := map[string]bool{}
	for i, r := range c.Receivers {
		key := fmt.Sprintf("receivers[%d]", i)
		switch {
		case r.Name == "":
			errs = append(errs, fmt.Errorf("%s.name is required", key))
		case names[r.Name]:
			errs = append(errs, fmt.Errorf("%s.name: duplicate receiver %q", key, r.Name))
		}
		names[r.Name] = true
		errs = append(errs, r.validate(key))
	}
	if c.Route == nil {
		errs = append(errs, errors.New("route is required"))
	} else {
		if len(c.Route.Matchers) > 0 {
			errs = append(errs, errors.New("route.matchers: the root route matches every finding and takes no matchers"))
		}
		if c.Route.Receiver == "" {
			errs = append(errs, errors.New("route.receiver is required on the root route"))
		}
		errs = append(errs, c.Route.validate("route", names))
	}
	return errors.Join(errs...)
}

func (r *RouteConfig) validate(key string, receivers map[string]bool) error {
	var errs []error
	if r.Receiver != "" && !receivers[r.Receiver] {
		errs = append(errs, fmt.Errorf("%s.receiver: no receiver named %q", key, r.Receiver))
	}
	for i, m := range r.Matchers {
		if _, err := ParseMatcher(m); err != nil {
			errs = append(errs, fmt.Errorf("%s.matchers[%d]: %w", key, i, err))
		}
	}
	for i, l := range r.GroupBy {
		if !slices.Contains(LabelNames, l) {
			errs = append(errs, fmt.Errorf("%s.group_by[%d]: unknown label %q: want one of %s", key, i, l, strings.Join(LabelNames, ", ")))
		}
	}
	for name, d := range map[string]*Duration{"group_wait": r.GroupWait, "group_interval": r.GroupInterval, "repeat_interval": r.RepeatInterval} {
		if d != nil && *d < 0 {
			errs = append(errs, fmt.Errorf("%s.%s must not be negative", key, name))
		}
	}
	if r.GroupInterval != nil && *r.GroupInterval == 0 {
		errs = append(errs, fmt.Errorf("%s.group_interval must be positive", key))
	}
	for i, child := range r.Routes {
		if child == nil {
			errs = append(errs, fmt.Errorf("%s.routes[%d] is empty", key, i))
			continue
		}
		errs = append(errs, child.validate(fmt.Sprintf("%s.routes[%d]", key, i), receivers))
	}
	return errors.Join(errs...)
}

func (r ReceiverConfig) validate(key string) error {
	var errs []error
	kinds := 0
	if s := r.Slack; s != nil {
		kinds++
		n := 0
		for _, set := range []bool{s.WebhookURLFile != "", s.WebhookURLEnv != "", s.WebhookURL != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("%s.slack: set exactly one of webhook_url_file and webhook_url_env", key))
		}
	}
	if a := r.Alertmanager; a != nil {
		kinds++
		errs = append(errs, validateURL(key+".alertmanager.url", a.URL))
		if a.ResolveTimeout <= 0 {
			errs = append(errs, fmt.Errorf("%s.alertmanager.resolve_timeout must be positive", key))
		}
	}
	if w := r.Webhook; w != nil {
		kinds++
		errs = append(errs, validateURL(key+".webhook.url", w.URL))
	}
	if r.Stdout != nil {
		kinds++
	}
	if kinds > 1 {
		errs = append(errs, fmt.Errorf("%s: set at most one of slack, alertmanager, webhook and stdout (got %d)", key, kinds))
	}
	return errors.Join(errs...)
}

func validateURL(key, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", key)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: want an http or https URL, got %q", key, s)
	}
	return nil
}

// ParseConfig reads YAML over the defaults. Unknown keys are errors naming
// their path, so a misspelt key never silently leaves a default in place.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if len(bytes.TrimSpace(data)) > 0 {
		var raw any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			return Config{}, fmt.Errorf("parsing alert config: %w", err)
		}
		if err := unknownKeys(reflect.TypeFor[Config](), raw, ""); err != nil {
			return Config{}, fmt.Errorf("parsing alert config: %w", err)
		}
		if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("parsing alert config: %w", err)
		}
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("validating alert config: %w", err)
	}
	return cfg, nil
}

// LoadConfig reads a YAML config file; see ParseConfig.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading alert config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// unknownKeys walks decoded YAML alongside t and names the first key that
// no field of t accepts, or the first unreadable duration, with its full
// path (encoding/json's own errors name only the key, or nothing).
func unknownKeys(t reflect.Type, v any, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Durations are checked here too, as encoding/json's error would not
	// say which one is wrong.
	if t == reflect.TypeFor[Duration]() {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a duration such as \"30s\", got %v", path, v)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	switch val := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return nil
		}
		fields := map[string]reflect.Type{}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		keys := make([]string, 0, len(val))
		for k := range val {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			p := k
			if path != "" {
				p = path + "." + k
			}
			if !ok {
				return fmt.Errorf("%s: unknown key", p)
			}
			if err := unknownKeys(ft, val[k], p); err != nil {
				return err
			}
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return nil
		}
		for i, e := range val {
			if err := unknownKeys(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// SimpleOptions is the command-line shortcut: every finding at or above
// MinSeverity goes to Slack, Alertmanager, or both.
type SimpleOptions struct {
	// SlackWebhookURL is the incoming-webhook URL. Optional.
	SlackWebhookURL Secret
	// AlertmanagerURL is Alertmanager's base URL. Optional.
	AlertmanagerURL string
	// MinSeverity is the lowest severity sent.
	MinSeverity pipeline.Severity
	// GrafanaURL and StateFile: see Config.
	GrafanaURL string
	StateFile  string
}

// Simple builds the configuration of the --slack-webhook-url,
// --alertmanager-url and --alert-min-severity flags: one route per given
// destination, each matching severity>=MinSeverity. With neither
// destination it returns DefaultConfig.
func Simple(o SimpleOptions) (Config, error) {
	if o.SlackWebhookURL == "" && o.AlertmanagerURL == "" {
		c := DefaultConfig()
		c.GrafanaURL, c.StateFile = o.GrafanaURL, o.StateFile
		return c, c.Validate()
	}
	c := Config{GrafanaURL: o.GrafanaURL, StateFile: o.StateFile}
	// The root discards what no child matches (findings below the
	// threshold); each destination is a child with continue, so both get
	// every finding at or above it.
	match := []string{"severity>=" + o.MinSeverity.String()}
	c.Route = &RouteConfig{Receiver: "discard"}
	c.Receivers = append(c.Receivers, ReceiverConfig{Name: "discard"})
	if o.SlackWebhookURL != "" {
		c.Receivers = append(c.Receivers, ReceiverConfig{Name: "slack", Slack: &SlackConfig{WebhookURL: o.SlackWebhookURL}})
		c.Route.Routes = append(c.Route.Routes, &RouteConfig{Receiver: "slack", Matchers: match, Continue: true})
	}
	if o.AlertmanagerURL != "" {
		c.Receivers = append(c.Receivers, ReceiverConfig{Name: "alertmanager", Alertmanager: &AlertmanagerConfig{URL: o.AlertmanagerURL}})
		c.Route.Routes = append(c.Route.Routes, &RouteConfig{Receiver: "alertmanager", Matchers: match, Continue: true})
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("building alert config: %w", err)
	}
	return c, nil
}
