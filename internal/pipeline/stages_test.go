package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// stagedEvent reads an event of testdata/events and rewrites it as stage
// (none: the stage member removed) of the same request, shaped as the
// apiserver writes that stage: RequestReceived has no response status and
// no authorization annotations yet, and every later stage is stamped later.
func stagedEvent(t testing.TB, file, cluster, stage string, edit func(m map[string]any)) *Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	received, err := time.Parse(time.RFC3339Nano, m["requestReceivedTimestamp"].(string))
	if err != nil {
		t.Fatal(err)
	}
	offset := map[string]time.Duration{
		"RequestReceived":  0,
		"ResponseStarted":  60 * time.Millisecond,
		"ResponseComplete": 14 * time.Minute,
		"Panic":            14 * time.Minute,
		"none":             14 * time.Minute,
	}[stage]
	m["stageTimestamp"] = received.Add(offset).Format("2006-01-02T15:04:05.000000Z07:00")
	switch stage {
	case "none":
		delete(m, "stage")
	case "RequestReceived":
		m["stage"] = stage
		delete(m, "responseStatus")
		delete(m, "annotations")
	default:
		m["stage"] = stage
	}
	if edit != nil {
		edit(m)
	}
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	// encoding/json, not the audit-event decoder (internal/auditjson,
	// which imports this package): FuzzDecodeEquivalence holds them equal.
	var ev Event
	if err := json.Unmarshal(data, &ev.Event); err != nil {
		t.Fatal(err)
	}
	ev.Decoded(cluster, data, false, nil)
	return &ev
}

func TestStageGate(t *testing.T) {
	// f admits the stages of one request of file, in arrival order, and
	// wants the verdicts joined by spaces.
	f := func(name, file, stages, want string) {
		t.Helper()
		g := NewStageGate(StageGateConfig{})
		var got []string
		for _, st := range strings.Fields(stages) {
			got = append(got, g.Admit(stagedEvent(t, file, "prod", st, nil)).String())
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("%s: %s gave %s, want %s", name, stages, strings.Join(got, " "), want)
		}
	}
	const exec, watch = "exec-response-started.json", "watch-response-started.json"
	const get = "stale-token.json"
	// Long-running requests: whichever authoritative stage comes first.
	f("exec, every stage", exec, "RequestReceived ResponseStarted ResponseComplete", "not_judged judged duplicate")
	f("exec, omitStages: [ResponseStarted]", exec, "RequestReceived ResponseComplete", "not_judged judged")
	f("exec, ResponseComplete overtakes", exec, "ResponseComplete ResponseStarted RequestReceived", "judged duplicate not_judged")
	f("exec, only ResponseStarted", exec, "ResponseStarted", "judged")
	f("exec, panicked", exec, "RequestReceived ResponseStarted Panic", "not_judged judged duplicate")
	f("exec, no stage", exec, "none", "judged")
	f("exec, no stage twice", exec, "none none", "judged duplicate")
	f("watch, every stage", watch, "RequestReceived ResponseStarted ResponseComplete", "not_judged judged duplicate")
	f("watch, omitStages: [ResponseStarted]", watch, "RequestReceived ResponseComplete", "not_judged judged")
	f("watch, ResponseStarted redelivered", watch, "ResponseStarted ResponseStarted ResponseComplete ResponseComplete", "judged duplicate duplicate duplicate")
	// Short requests: ResponseComplete (or Panic) only.
	f("get", get, "RequestReceived ResponseComplete", "not_judged judged")
	f("get, redelivered", get, "ResponseComplete ResponseComplete", "judged duplicate")
	f("get, panicked", get, "RequestReceived Panic", "not_judged judged")
	f("get, no stage", get, "none", "judged")
	f("get, RequestReceived only", get, "RequestReceived", "not_judged")
	f("panic fixture", "panic.json", "Panic Panic", "judged duplicate")
	// Failed authentication: its only event is ResponseStarted.
	f("failed authentication", "failed-authentication-401.json", "ResponseStarted ResponseStarted", "judged duplicate")
}

// TestStageGateNoStage: an event without a stage is judged as
// ResponseComplete, and reads so afterwards.
func TestStageGateNoStage(t *testing.T) {
	g := NewStageGate(StageGateConfig{})
	ev := stagedEvent(t, "exec-response-started.json", "prod", "none", nil)
	if StageLabel(ev) != "none" {
		t.Fatalf("label %q, want none", StageLabel(ev))
	}
	if v := g.Admit(ev); v != StageJudged {
		t.Fatalf("verdict %v", v)
	}
	if ev.Stage != auditv1.StageResponseComplete {
		t.Fatalf("stage %q, want ResponseComplete", ev.Stage)
	}
	// The same request's ResponseStarted, arriving late, is not judged again.
	if v := g.Admit(stagedEvent(t, "exec-response-started.json", "prod", "ResponseStarted", nil)); v != StageDuplicate {
		t.Fatalf("late ResponseStarted: %v", v)
	}
}

// TestStageGateRequests: requests are told apart by cluster and by what
// the apiserver sets once per request, not by the client-chosen auditID.
func TestStageGateRequests(t *testing.T) {
	const exec = "exec-response-started.json"
	g := NewStageGate(StageGateConfig{})
	if v := g.Admit(stagedEvent(t, exec, "prod", "ResponseStarted", nil)); v != StageJudged {
		t.Fatal(v)
	}
	// Another cluster's request with the same auditID.
	if v := g.Admit(stagedEvent(t, exec, "staging", "ResponseComplete", nil)); v != StageJudged {
		t.Fatalf("other cluster: %v", v)
	}
	// The same client reusing its Audit-ID header for a second exec.
	second := func(m map[string]any) {
		m["requestURI"] = strings.Replace(m["requestURI"].(string), "command=sh", "command=cat&command=/var/run/secrets/kubernetes.io/serviceaccount/token", 1)
		m["requestReceivedTimestamp"] = "2026-11-27T09:05:00.000001Z"
	}
	if v := g.Admit(stagedEvent(t, exec, "prod", "ResponseStarted", second)); v != StageJudged {
		t.Fatalf("reused auditID hid another request: %v", v)
	}
	if v := g.Admit(stagedEvent(t, exec, "prod", "ResponseComplete", second)); v != StageDuplicate {
		t.Fatalf("second request judged twice: %v", v)
	}
	// All stages of one request share RequestHash; ContentHash differs.
	rs := stagedEvent(t, exec, "prod", "ResponseStarted", nil)
	rc := stagedEvent(t, exec, "prod", "ResponseComplete", nil)
	if RequestHash(&rs.Event) != RequestHash(&rc.Event) || rs.Hash() == rc.Hash() {
		t.Fatal("RequestHash must name the request, ContentHash the stage")
	}
	// So do finding ids.
	if NewFinding("d", rs, "x").ID != NewFinding("d", rc, "x").ID {
		t.Fatal("finding ids differ between the stages of one request")
	}
}

// TestStageGateBounds: memory stays within the configured entries, and a
// request forgotten (evicted or expired) is judged again rather than lost.
func TestStageGateBounds(t *testing.T) {
	const exec = "exec-response-started.json"
	g := NewStageGate(StageGateConfig{OpenRequests: 2, DoneRequests: 3, OpenTTL: time.Hour, DoneTTL: time.Minute})
	uri := func(i int) func(m map[string]any) {
		return func(m map[string]any) { m["auditID"] = "req-" + string(rune('a'+i)) }
	}
	for i := range 5 {
		if v := g.Admit(stagedEvent(t, exec, "prod", "ResponseStarted", uri(i))); v != StageJudged {
			t.Fatalf("request %d: %v", i, v)
		}
	}
	if n := g.Len(); n != 2 {
		t.Fatalf("remembering %d requests, bound 2", n)
	}
	// Request 0 was evicted: its ResponseComplete is judged (same ids).
	if v := g.Admit(stagedEvent(t, exec, "prod", "ResponseComplete", uri(0))); v != StageJudged {
		t.Fatalf("evicted request: %v", v)
	}
	// Request 4 is still open.
	if v := g.Admit(stagedEvent(t, exec, "prod", "ResponseComplete", uri(4))); v != StageDuplicate {
		t.Fatalf("open request: %v", v)
	}
	for i := 5; i < 10; i++ {
		g.Admit(stagedEvent(t, "stale-token.json", "prod", "ResponseComplete", uri(i)))
	}
	if n := g.Len(); n > 5 {
		t.Fatalf("remembering %d requests, bound 5", n)
	}
	// Expiry is in event time: a copy stamped after the TTL is judged again.
	late := func(m map[string]any) {
		uri(9)(m)
		m["stageTimestamp"] = "2026-12-27T09:00:00.000000Z"
	}
	if v := g.Admit(stagedEvent(t, "stale-token.json", "prod", "ResponseComplete", late)); v != StageJudged {
		t.Fatalf("expired request: %v", v)
	}
}

// TestKeyClusterRoundTrip: the cluster MessageKey puts in a key is the one
// KeyCluster reads back, for every valid cluster name; keys ingest did not
// build give nothing.
func TestKeyClusterRoundTrip(t *testing.T) {
	ev := &Event{}
	ev.User.Username = "system:serviceaccount:kube-system:replicaset-controller"
	for _, cluster := range []string{"prod-eu-1", "a", "gke.europe-west1.prod_2"} {
		if err := ValidateCluster(cluster); err != nil {
			t.Fatal(err)
		}
		got, ok := KeyCluster(MessageKey(cluster, ev))
		if !ok || got != cluster {
			t.Errorf("KeyCluster(MessageKey(%q)) = %q, %v", cluster, got, ok)
		}
	}
	for _, key := range []string{"", "/x", "no-slash"} {
		if c, ok := KeyCluster([]byte(key)); ok {
			t.Errorf("KeyCluster(%q) = %q, want none", key, c)
		}
	}
	for _, bad := range []string{"", "a/b", "-lead", "sp ace"} {
		if ValidateCluster(bad) == nil {
			t.Errorf("ValidateCluster(%q) accepted it", bad)
		}
	}
}
