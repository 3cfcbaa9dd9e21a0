package ingest

import (
	"errors"
	"fmt"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// ReasonInvalid counts, in MetricEventsRejected, events that decode but
// lack what every apiserver sends.
const ReasonInvalid = "invalid"

// validateEvent refuses an event without what kube-apiserver always
// writes: an auditID, a known stage and level, and both timestamps. Such an
// event did not come from an apiserver, and storing it would give
// detectors a request they cannot place (no stage to judge it at, no time
// to order it by) and the dedup key nothing to stand on.
func validateEvent(ev *auditv1.Event) error {
	var problems []string
	if ev.AuditID == "" {
		problems = append(problems, "auditID is missing")
	}
	switch ev.Stage {
	case auditv1.StageRequestReceived, auditv1.StageResponseStarted, auditv1.StageResponseComplete, auditv1.StagePanic:
	case "":
		problems = append(problems, "stage is missing")
	default:
		problems = append(problems, fmt.Sprintf("stage %s is not RequestReceived, ResponseStarted, ResponseComplete or Panic", quoteShort(string(ev.Stage))))
	}
	switch ev.Level {
	case auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse:
	case "":
		problems = append(problems, "level is missing")
	default:
		problems = append(problems, fmt.Sprintf("level %s is not None, Metadata, Request or RequestResponse", quoteShort(string(ev.Level))))
	}
	if ev.RequestReceivedTimestamp.IsZero() {
		problems = append(problems, "requestReceivedTimestamp is missing")
	}
	if ev.StageTimestamp.IsZero() {
		problems = append(problems, "stageTimestamp is missing")
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("invalid event: " + strings.Join(problems, "; "))
}

// quoteShort quotes an attacker-chosen value for an error message, cut to a
// length that keeps answers and logs small.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
