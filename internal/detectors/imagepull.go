package detectors

// ImagePullConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type ImagePullConfig struct{}

func defaultImagePullConfig() ImagePullConfig { return ImagePullConfig{} }

func (c ImagePullConfig) validate(prefix string) error { return nil }

func buildImagePull(cfg Config) ([]Detector, error) { return nil, nil }
