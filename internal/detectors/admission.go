package detectors

// AdmissionConfig configures the detector(s) built in this file.
// Placeholder until the detector lands: no keys yet.
type AdmissionConfig struct{}

func defaultAdmissionConfig() AdmissionConfig { return AdmissionConfig{} }

func (c AdmissionConfig) validate(prefix string) error { return nil }

func buildAdmission(cfg Config) ([]Detector, error) { return nil, nil }
