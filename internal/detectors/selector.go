package detectors

// SelectorConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type SelectorConfig struct{}

func defaultSelectorConfig() SelectorConfig { return SelectorConfig{} }

func (c SelectorConfig) validate(prefix string) error { return nil }

func buildSelector(cfg Config) ([]Detector, error) { return nil, nil }
