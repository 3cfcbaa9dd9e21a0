package detectors

// AppArmorConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type AppArmorConfig struct{}

func defaultAppArmorConfig() AppArmorConfig { return AppArmorConfig{} }

func (c AppArmorConfig) validate(prefix string) error { return nil }

func buildAppArmor(cfg Config) ([]Detector, error) { return nil, nil }
