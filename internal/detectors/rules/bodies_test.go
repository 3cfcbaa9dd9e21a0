package rules_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// TestBodiesDecodedOnce runs every built-in detector and the default rule
// pack over a generated stream rich in attacks (as ingest redacts it) and
// over the detectors' own test events, and checks through the event's
// decode counter that no body is decoded twice: at most one decode per
// body present, and none when the same event is judged again.
func TestBodiesDecodedOnce(t *testing.T) {
	builtins, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	files, err := rules.DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	pack, err := rules.Load(files...)
	if err != nil {
		t.Fatal(err)
	}

	var events [][]byte
	g := gen.New(gen.Config{Seed: 12, AttackRatio: 0.5})
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		out, _, err := red.Event(g.Next().JSON)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, out)
	}
	// The detectors' fixtures: pods, workloads, token reviews and
	// requests, secrets, admission and selector bodies.
	fixtures, _ := filepath.Glob("../testdata/*/*.json")
	for _, f := range fixtures {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, b)
	}

	var ev pipeline.Event
	var out []pipeline.Finding
	decoded, withBodies := 0, 0
	for i, raw := range events {
		if err := auditjson.Decode(&ev, "prod", raw); err != nil {
			continue // a fixture that is not a single event
		}
		bodies := 0
		if ev.RequestObject != nil && len(ev.RequestObject.Raw) > 0 {
			bodies++
		}
		if ev.ResponseObject != nil && len(ev.ResponseObject.Raw) > 0 {
			bodies++
		}
		before := ev.BodyDecodes()
		out = builtins.Detect(&ev, out[:0])
		out = pack.Detect(&ev, out)
		n := ev.BodyDecodes() - before
		if n > bodies {
			t.Fatalf("event %d (%s %s): %d body decodes for %d bodies", i, ev.Verb, ev.RequestURI, n, bodies)
		}
		// Judged again, the event reuses what it decoded.
		out = builtins.Detect(&ev, out[:0])
		out = pack.Detect(&ev, out)
		if again := ev.BodyDecodes() - before - n; again != 0 {
			t.Fatalf("event %d (%s %s): %d more body decodes when judged again", i, ev.Verb, ev.RequestURI, again)
		}
		decoded += n
		if bodies > 0 {
			withBodies++
		}
	}
	if decoded == 0 || withBodies == 0 {
		t.Fatalf("no body was read (%d events with bodies): the test proves nothing", withBodies)
	}
	t.Logf("%d events, %d with bodies, %d body decodes", len(events), withBodies, decoded)
}

// TestBodiesFollowTheEvent checks that a reused Event never serves the
// previous event's body.
func TestBodiesFollowTheEvent(t *testing.T) {
	mk := func(name string) []byte {
		return []byte(strings.ReplaceAll(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-NAME","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/d/configmaps","verb":"create","user":{"username":"u"},"objectRef":{"resource":"configmaps","namespace":"d","apiVersion":"v1"},"responseStatus":{"code":201},"requestObject":{"metadata":{"name":"NAME"}}}`, "NAME", name))
	}
	var ev pipeline.Event
	for _, name := range []string{"one", "two"} {
		if err := auditjson.Decode(&ev, "prod", mk(name)); err != nil {
			t.Fatal(err)
		}
		body, _ := ev.RequestBody().(map[string]any)
		md, _ := body["metadata"].(map[string]any)
		if got := md["name"]; got != name {
			t.Fatalf("request body name = %v, want %s", got, name)
		}
	}
}
