package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// slackReceiver posts RenderSlack's payload to an incoming webhook.
type slackReceiver struct {
	url    Secret
	opts   SlackOptions
	client *http.Client
}

func (r *slackReceiver) deliver(ctx context.Context, g *Group) error {
	body, err := RenderSlack(*g, r.opts)
	if err != nil {
		return &deliveryError{permanent: true, err: err}
	}
	return postJSON(ctx, r.client, r.url.Reveal(), body)
}

// amReceiver posts alerts to Alertmanager's API v2, so Alertmanager's own
// routing, silences and inhibition apply to findings.
type amReceiver struct {
	url     string
	resolve time.Duration
	client  *http.Client
}

// AlertmanagerAlert is an element of POST /api/v2/alerts (postableAlert).
type AlertmanagerAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// maxAnnotation bounds an annotation: Alertmanager keeps alerts in memory
// and passes annotations to every notifier.
const maxAnnotation = 4000

// AlertmanagerAlerts converts g into Alertmanager alerts. Each alert names
// its finding (finding_id), so Alertmanager keeps them apart; endsAt lies
// resolve after the later of the event time and now, so an alert about an
// old event replayed from a log is still active when it arrives.
func AlertmanagerAlerts(g Group, resolve time.Duration, now time.Time) []AlertmanagerAlert {
	out := make([]AlertmanagerAlert, 0, len(g.Alerts))
	for _, a := range g.Alerts {
		f := &a.Finding
		labels := map[string]string{"alertname": f.Detector, "source": "auditpipe"}
		for k, v := range map[string]string{
			"detector": f.Detector, "severity": f.Severity.String(), "cluster": f.Cluster,
			"namespace": f.Namespace, "user": f.Username, "finding_id": f.ID, "mitre_technique": f.MITRE,
		} {
			if v != "" {
				labels[k] = v
			}
		}
		link := GrafanaLink(g.GrafanaURL, f)
		ann := map[string]string{
			"summary":     truncate(f.Summary, maxAnnotation),
			"occurrences": strconv.Itoa(a.Count),
			"object":      objectText(f),
			"evidence":    truncate(evidenceText(f), maxAnnotation),
		}
		if link != "" {
			ann["grafana_url"] = link
		}
		starts := a.FirstSeen
		if starts.IsZero() {
			starts = now
		}
		out = append(out, AlertmanagerAlert{Labels: labels, Annotations: ann, StartsAt: starts.UTC(), EndsAt: later(starts, now).Add(resolve).UTC(), GeneratorURL: link})
	}
	return out
}

func (r *amReceiver) deliver(ctx context.Context, g *Group) error {
	body, err := json.Marshal(AlertmanagerAlerts(*g, r.resolve, time.Now()))
	if err != nil {
		return &deliveryError{permanent: true, err: fmt.Errorf("encoding alerts: %w", err)}
	}
	return postJSON(ctx, r.client, r.url, body)
}

// webhookReceiver posts WebhookPayload.
type webhookReceiver struct {
	url    string
	client *http.Client
}

// WebhookPayload is the generic webhook's body.
type WebhookPayload struct {
	Version     string            `json:"version"`
	Receiver    string            `json:"receiver"`
	GroupLabels map[string]string `json:"group_labels"`
	Alerts      []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one folded finding in a WebhookPayload.
type WebhookAlert struct {
	Finding    pipeline.Finding `json:"finding"`
	Count      int              `json:"count"`
	FirstSeen  time.Time        `json:"first_seen"`
	LastSeen   time.Time        `json:"last_seen"`
	GrafanaURL string           `json:"grafana_url,omitempty"`
	FindingIDs []string         `json:"finding_ids"`
}

func (r *webhookReceiver) deliver(ctx context.Context, g *Group) error {
	p := WebhookPayload{Version: "1", Receiver: g.Receiver, GroupLabels: map[string]string{}}
	for _, l := range g.Labels {
		p.GroupLabels[l.Name] = l.Value
	}
	for _, a := range g.Alerts {
		p.Alerts = append(p.Alerts, WebhookAlert{Finding: a.Finding, Count: a.Count, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, GrafanaURL: GrafanaLink(g.GrafanaURL, &a.Finding), FindingIDs: a.IDs})
	}
	body, err := json.Marshal(p)
	if err != nil {
		return &deliveryError{permanent: true, err: fmt.Errorf("encoding webhook payload: %w", err)}
	}
	return postJSON(ctx, r.client, r.url, body)
}

// stdoutReceiver prints one line per alert; user-controlled values are
// quoted so that control characters cannot rewrite the terminal.
type stdoutReceiver struct {
	mu sync.Mutex
	w  io.Writer
}

func (r *stdoutReceiver) deliver(_ context.Context, g *Group) error {
	var b strings.Builder
	for _, a := range g.Alerts {
		f := &a.Finding
		fmt.Fprintf(&b, "ALERT severity=%s detector=%s cluster=%q count=%d user=%q object=%q summary=%q", f.Severity, f.Detector, f.Cluster, a.Count, f.Username, objectText(f), f.Summary)
		if link := GrafanaLink(g.GrafanaURL, f); link != "" {
			fmt.Fprintf(&b, " link=%s", link)
		}
		b.WriteByte('\n')
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.w, b.String()); err != nil {
		return &deliveryError{permanent: true, err: fmt.Errorf("printing alert: %w", err)}
	}
	return nil
}

// objectText is "resource/subresource namespace/name", or the request URI
// of a non-resource request.
func objectText(f *pipeline.Finding) string {
	if f.Resource == "" {
		return f.RequestURI
	}
	s := f.Resource
	if f.Subresource != "" {
		s += "/" + f.Subresource
	}
	switch {
	case f.Namespace != "" && f.Name != "":
		s += " " + f.Namespace + "/" + f.Name
	case f.Name != "":
		s += " " + f.Name
	case f.Namespace != "":
		s += " in " + f.Namespace
	}
	return s
}

// evidenceText is one "field = value (source)" line per piece of evidence.
func evidenceText(f *pipeline.Finding) string {
	var b strings.Builder
	for i, e := range f.Evidence {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s = %s (%s)", e.Field, e.Value, e.Source)
	}
	return b.String()
}

// truncate cuts s to at most n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for pos := range s {
		if i == n-1 {
			return s[:pos] + "…"
		}
		i++
	}
	return s
}
