// Package detectors holds auditpipe's built-in detectors and the Suite that
// runs them over each event.
//
// A detector is pure CPU: it does no I/O, is safe for concurrent use, and
// keeps nothing of the event it was given, unless it is stateful, in which
// case it owns bounded state (see Window).
package detectors

import (
	"fmt"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Detector judges one audit event and appends what it found to out.
type Detector interface {
	// ID is the detector's stable id, e.g. "anonymous-access".
	ID() string
	// Detect appends findings about ev to out and returns out. It is only
	// called with an authoritative stage (pipeline.Event.IsAuthoritative),
	// and, behind the pipeline's StageGate, once per request.
	Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding
}

// Suite runs a fixed list of detectors (rules.Set holds the user rules).
// It is safe for concurrent use.
type Suite struct {
	detectors []Detector
}

// NewSuite builds a Suite from explicit detectors; New builds the built-in one.
func NewSuite(ds ...Detector) *Suite {
	return &Suite{detectors: ds}
}

// New builds the set of built-in detectors from cfg.
func New(cfg Config) (*Suite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	builders := []func(Config) ([]Detector, error){
		buildAnonymous,
		buildTokens,
		buildImagePull,
		buildJWT,
		buildSelector,
		buildAppArmor,
		buildAdmission,
		buildOrigin,
	}
	var ds []Detector
	for _, b := range builders {
		got, err := b(cfg)
		if err != nil {
			return nil, fmt.Errorf("building detectors: %w", err)
		}
		ds = append(ds, got...)
	}
	return NewSuite(ds...), nil
}

// IDs lists the detectors in the set.
func (s *Suite) IDs() []string {
	ids := make([]string, len(s.detectors))
	for i, d := range s.detectors {
		ids[i] = d.ID()
	}
	return ids
}

// Detect runs every detector on ev if ev is a stage its request may be
// judged from, and appends the findings to out. RequestReceived (and
// ResponseStarted of a short request) yields nothing. A long-running
// request has two authoritative stages: callers that may see both put a
// pipeline.StageGate in front, as detect run and detect scan do, so a
// request is never reported twice.
func (s *Suite) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	if !ev.IsAuthoritative() {
		return out
	}
	for _, d := range s.detectors {
		out = d.Detect(ev, out)
	}
	return out
}
