package detectors

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/auditpipe/auditpipe/internal/config"
)

// Config configures every built-in detector. Each section is owned by the
// detector file of the same name; every key has a default (DefaultConfig).
type Config struct {
	// State bounds the memory of stateful detectors.
	State StateConfig `json:"state"`

	AnonymousAccess    AnonymousConfig `json:"anonymous_access"`
	Tokens             TokenConfig     `json:"tokens"`
	UnsecuredImagePull ImagePullConfig `json:"unsecured_image_pull"`
	UnsignedJWT        JWTConfig       `json:"unsigned_jwt"`
	BroadSelector      SelectorConfig  `json:"broad_selector"`
	AppArmorUnconfined AppArmorConfig  `json:"apparmor_unconfined"`
	AdmissionPolicy    AdmissionConfig `json:"admission_policy_change"`
	// DeniedBurst and BadNetworks are where requests come from (origin.go).
	DeniedBurst DeniedBurstConfig `json:"denied_burst"`
	BadNetworks BadNetworksConfig `json:"bad_networks"`
}

// StateConfig bounds stateful detectors' memory.
type StateConfig struct {
	// MaxEntries caps each stateful detector's table (LRU eviction beyond).
	// Default 100000.
	MaxEntries int `json:"max_entries"`
	// Window is how long an entry is remembered after its last event, and
	// how far out of order events may arrive and still be correlated.
	// Default 10m.
	Window Duration `json:"window"`
}

// Duration is the duration type every config file shares, written as
// "10m" in YAML.
type Duration = config.Duration

// DefaultConfig returns the configuration used when no file is given.
func DefaultConfig() Config {
	return Config{
		State:              StateConfig{MaxEntries: 100000, Window: Duration(10 * time.Minute)},
		AnonymousAccess:    defaultAnonymousConfig(),
		Tokens:             defaultTokenConfig(),
		UnsecuredImagePull: defaultImagePullConfig(),
		UnsignedJWT:        defaultJWTConfig(),
		BroadSelector:      defaultSelectorConfig(),
		AppArmorUnconfined: defaultAppArmorConfig(),
		AdmissionPolicy:    defaultAdmissionConfig(),
		DeniedBurst:        defaultDeniedBurstConfig(),
		BadNetworks:        defaultBadNetworksConfig(),
	}
}

// Validate reports every problem in c, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.State.MaxEntries <= 0 {
		errs = append(errs, errors.New("state.max_entries must be positive"))
	}
	if c.State.Window <= 0 {
		errs = append(errs, errors.New("state.window must be positive"))
	}
	errs = append(errs,
		c.AnonymousAccess.validate("anonymous_access"),
		c.Tokens.validate("tokens"),
		c.UnsecuredImagePull.validate("unsecured_image_pull"),
		c.UnsignedJWT.validate("unsigned_jwt"),
		c.BroadSelector.validate("broad_selector"),
		c.AppArmorUnconfined.validate("apparmor_unconfined"),
		c.AdmissionPolicy.validate("admission_policy_change"),
		c.DeniedBurst.validate("denied_burst"),
		c.BadNetworks.validate("bad_networks"),
	)
	return errors.Join(errs...)
}

// ParseConfig reads YAML over the defaults. Unknown keys are errors, so a
// misspelt key never silently leaves a default in place.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("parsing detector config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("validating detector config: %w", err)
	}
	return cfg, nil
}

// LoadConfig reads a YAML config file; see ParseConfig.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading detector config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}
