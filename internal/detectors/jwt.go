package detectors

// JWTConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type JWTConfig struct{}

func defaultJWTConfig() JWTConfig { return JWTConfig{} }

func (c JWTConfig) validate(prefix string) error { return nil }

func buildJWT(cfg Config) ([]Detector, error) { return nil, nil }
