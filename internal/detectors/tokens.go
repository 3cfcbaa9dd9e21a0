package detectors

// TokenConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type TokenConfig struct{}

func defaultTokenConfig() TokenConfig { return TokenConfig{} }

func (c TokenConfig) validate(prefix string) error { return nil }

func buildTokens(cfg Config) ([]Detector, error) { return nil, nil }
