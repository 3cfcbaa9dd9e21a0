package pipeline

// EventDetector judges one event, appending what it finds to out;
// detectors.Suite and rules.Set implement it, and the processor consumes it.
type EventDetector interface {
	Detect(ev *Event, out []Finding) []Finding
}
