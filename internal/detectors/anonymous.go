package detectors

// AnonymousConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type AnonymousConfig struct{}

func defaultAnonymousConfig() AnonymousConfig { return AnonymousConfig{} }

func (c AnonymousConfig) validate(prefix string) error { return nil }

func buildAnonymous(cfg Config) ([]Detector, error) { return nil, nil }
