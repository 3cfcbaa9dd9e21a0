package auditjson

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/jsonscan"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// rrEvent is a RequestReceived event as an apiserver logs it at level
// Request: a request body, no response.
const rrEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"6a0c1f7e-1b2d-4c3e-8f9a-0b1c2d3e4f50","stage":"RequestReceived","requestURI":"/api/v1/namespaces/payments/pods","verb":"create","user":{"username":"system:serviceaccount:kube-system:replicaset-controller","uid":"5d2c1b0a-9f8e-4d7c-b6a5-948372615041","groups":["system:serviceaccounts","system:authenticated"]},"sourceIPs":["172.18.0.2"],"userAgent":"kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46","objectRef":{"resource":"pods","namespace":"payments","apiVersion":"v1"},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"payments-api-"},"spec":{"containers":[{"name":"api","image":"registry.internal.example.com/payments/api:1.4.2"}]}},"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.123456Z"}`

// peekCases are the tricky inputs: what PeekStage must say (ok false:
// not sure), and so what IsRequestReceived must say, unless it gives up
// at an earlier stage member (peekGivesUp). The fuzz target starts from
// them.
var peekCases = []struct {
	name  string
	data  string
	stage auditv1.Stage
	ok    bool
}{
	{"RequestReceived", rrEvent, auditv1.StageRequestReceived, true},
	{"ResponseComplete", testEventJSON, auditv1.StageResponseComplete, true},
	{"v1beta1", strings.Replace(rrEvent, `audit.k8s.io/v1"`, `audit.k8s.io/v1beta1"`, 1), auditv1.StageRequestReceived, true},
	{"no kind or apiVersion (an EventList item)", `{"auditID":"a","stage":"RequestReceived","verb":"get"}`, auditv1.StageRequestReceived, true},
	{"no stage", `{"auditID":"a","verb":"get"}`, "", true},
	{"empty stage", `{"stage":"","verb":"get"}`, "", true},
	{"spaced", " {\n \"stage\" :\t\"RequestReceived\" , \"verb\" : \"get\" }\r\n", auditv1.StageRequestReceived, true},
	// A repeated member: the last wins, a null one leaves the one before.
	{"duplicate, last ResponseComplete", `{"stage":"RequestReceived","verb":"get","stage":"ResponseComplete"}`, auditv1.StageResponseComplete, true},
	{"duplicate, last RequestReceived", `{"stage":"ResponseComplete","verb":"get","stage":"RequestReceived"}`, auditv1.StageRequestReceived, true},
	{"duplicate null", `{"stage":"RequestReceived","stage":null}`, auditv1.StageRequestReceived, true},
	{"null first", `{"stage":null,"stage":"RequestReceived"}`, auditv1.StageRequestReceived, true},
	// Other spellings of the name, which encoding/json matches too.
	{"Stage", `{"verb":"get","Stage":"RequestReceived"}`, auditv1.StageRequestReceived, true},
	{"STAGE overriding", `{"stage":"RequestReceived","STAGE":"ResponseStarted"}`, auditv1.StageResponseStarted, true},
	{"escaped name", `{"stage":"ResponseComplete","st\u0061ge":"RequestReceived"}`, auditv1.StageRequestReceived, true},
	{"escaped name overriding", `{"stage":"RequestReceived","st\u0061ge":"Panic"}`, auditv1.StagePanic, true},
	{"kelvin sign folds to k", "{\"\u212aind\":\"EventList\",\"stage\":\"RequestReceived\"}", "", false},
	{"not the name", `{"stages":"RequestReceived","stage ":"x"}`, "", true},
	// Nested stage members are not the event's.
	{"nested", `{"requestObject":{"stage":"RequestReceived"},"user":{"stage":"RequestReceived"},"annotations":{"stage":"RequestReceived"}}`, "", true},
	{"nested and top", `{"requestObject":{"stage":"ResponseComplete"},"stage":"RequestReceived"}`, auditv1.StageRequestReceived, true},
	// Values it does not read: not sure.
	{"escaped value", `{"stage":"Request\u0052eceived"}`, "", false},
	{"number", `{"stage":1}`, "", false},
	{"object", `{"stage":{"a":"RequestReceived"}}`, "", false},
	{"invalid UTF-8", "{\"stage\":\"RequestReceived\xff\"}", "", false},
	// What Decode refuses by kind or apiVersion.
	{"EventList", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"stage":"RequestReceived"}],"stage":"RequestReceived"}`, "", false},
	{"other apiVersion", strings.Replace(rrEvent, `audit.k8s.io/v1"`, `audit.k8s.io/v2"`, 1), "", false},
	{"kind null", `{"kind":null,"stage":"RequestReceived"}`, auditv1.StageRequestReceived, true},
	{"kind number", `{"kind":1,"stage":"RequestReceived"}`, "", false},
	{"kind escaped", `{"kind":"Ev\u0065nt","stage":"RequestReceived"}`, "", false},
	// Invalid JSON after (or before) the stage member.
	{"truncated", rrEvent[:len(rrEvent)-10], "", false},
	{"trailing garbage", rrEvent + "x", "", false},
	{"two values", rrEvent + rrEvent, "", false},
	{"bad value after", `{"stage":"RequestReceived","verb":get}`, "", false},
	{"bad nested after", `{"stage":"RequestReceived","requestObject":{"a":[1,]}}`, "", false},
	{"control character after", "{\"stage\":\"RequestReceived\",\"verb\":\"g\tet\"}", "", false},
	{"missing colon", `{"stage""RequestReceived"}`, "", false},
	{"too deep", `{"stage":"RequestReceived","requestObject":` + strings.Repeat("[", jsonscan.MaxDepth+1) + strings.Repeat("]", jsonscan.MaxDepth+1) + `}`, "", false},
	{"deep enough", `{"stage":"RequestReceived","requestObject":` + strings.Repeat("[", jsonscan.MaxDepth-1) + strings.Repeat("]", jsonscan.MaxDepth-1) + `}`, auditv1.StageRequestReceived, true},
	// Not an object.
	{"null", `null`, "", false},
	{"array", `[{"stage":"RequestReceived"}]`, "", false},
	{"string", `"RequestReceived"`, "", false},
	{"empty", ``, "", false},
	// Valid JSON with a mistyped field: PeekStage does not look, Decode
	// fails (the fuzz invariant allows it).
	{"mistyped verb", `{"stage":"RequestReceived","verb":1}`, auditv1.StageRequestReceived, true},
}

// peekGivesUp names the peekCases where a stage other than RequestReceived
// comes first, where IsRequestReceived gives up.
var peekGivesUp = map[string]bool{
	"duplicate, last RequestReceived": true,
	"escaped name":                    true,
}

func TestPeekStage(t *testing.T) {
	for _, tc := range peekCases {
		t.Run(tc.name, func(t *testing.T) {
			stage, ok := PeekStage([]byte(tc.data))
			if stage != tc.stage || ok != tc.ok {
				t.Errorf("PeekStage = %q, %v; want %q, %v", stage, ok, tc.stage, tc.ok)
			}
			wantRR := tc.ok && tc.stage == auditv1.StageRequestReceived && !peekGivesUp[tc.name]
			if got := IsRequestReceived([]byte(tc.data)); got != wantRR {
				t.Errorf("IsRequestReceived = %v, want %v", got, wantRR)
			}
			checkPeek(t, []byte(tc.data))
		})
	}
}

// TestPeekStageEarlyExit: IsRequestReceived gives up at the first stage
// other than RequestReceived, before looking at the rest (which would not
// be valid here), while PeekStage reads on and refuses the invalid rest.
func TestPeekStageEarlyExit(t *testing.T) {
	data := []byte(`{"stage":"ResponseComplete","verb":get}`)
	if IsRequestReceived(data) {
		t.Error("IsRequestReceived = true")
	}
	if stage, ok := PeekStage(data); ok {
		t.Errorf("PeekStage = %q, true on invalid JSON", stage)
	}
}

// TestPeekStageGenerated: on the generated stream, events of every stage
// the generator writes, PeekStage says each event's stage, as Decode
// does; and IsRequestReceived picks exactly the RequestReceived ones.
// A Panic event is also made from a ResponseComplete one, so that the
// test does not depend on the stream holding one.
func TestPeekStageGenerated(t *testing.T) {
	g := gen.New(gen.Config{Seed: 7, AttackRatio: 0.2})
	seen := map[auditv1.Stage]int{}
	check := func(data []byte, want auditv1.Stage) {
		t.Helper()
		var ev pipeline.Event
		if err := Decode(&ev, "c", data); err != nil {
			t.Fatalf("Decode: %v\n%s", err, data)
		}
		if ev.Stage != want {
			t.Fatalf("Decode stage %q, generator says %q", ev.Stage, want)
		}
		stage, ok := PeekStage(data)
		if !ok || stage != want {
			t.Fatalf("PeekStage = %q, %v; want %q, true\n%s", stage, ok, want, data)
		}
		if got := IsRequestReceived(data); got != (want == auditv1.StageRequestReceived) {
			t.Fatalf("IsRequestReceived = %v on a %s event", got, want)
		}
		seen[want]++
	}
	for range 5000 {
		e := g.Next()
		check(e.JSON, e.Stage)
		if e.Stage == auditv1.StageResponseComplete && seen[auditv1.StagePanic] == 0 {
			check(bytes.Replace(e.JSON, []byte(`"stage":"ResponseComplete"`), []byte(`"stage":"Panic"`), 1), auditv1.StagePanic)
		}
	}
	for _, s := range []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StageResponseStarted, auditv1.StageResponseComplete, auditv1.StagePanic} {
		if seen[s] == 0 {
			t.Errorf("no %s event in the generated stream", s)
		}
	}
	t.Logf("stages: %v", seen)
}

// checkPeek is FuzzPeekStage's invariant: what PeekStage is sure of is
// valid JSON that Decode either refuses for a mistyped member or decodes
// to that stage, and IsRequestReceived agrees with it.
func checkPeek(t *testing.T, data []byte) {
	t.Helper()
	stage, ok := PeekStage(data)
	rr := IsRequestReceived(data)
	if rr && (!ok || stage != auditv1.StageRequestReceived) {
		t.Fatalf("IsRequestReceived true, PeekStage = %q, %v", stage, ok)
	}
	if !ok {
		return
	}
	if !jsonscan.Valid(data) {
		t.Fatalf("PeekStage = %q, true on invalid JSON", stage)
	}
	var ev pipeline.Event
	err := Decode(&ev, "c", data)
	if err == nil && ev.Stage != stage {
		t.Fatalf("PeekStage = %q, Decode yields %q", stage, ev.Stage)
	}
	// What Decode may fail on is a member of the wrong type, never the
	// kind or apiVersion, which PeekStage checks.
	if tm := new(typeMetaError); errors.As(err, &tm) {
		t.Fatalf("PeekStage = %q, true; Decode: %v", stage, err)
	}
}

// FuzzPeekStage holds PeekStage to Decode on arbitrary input (checkPeek),
// starting from real events of every stage and the tricky cases.
func FuzzPeekStage(f *testing.F) {
	for _, tc := range peekCases {
		f.Add([]byte(tc.data))
	}
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.3})
	stages := map[auditv1.Stage]int{}
	for range 2000 {
		e := g.Next()
		if stages[e.Stage] < 3 {
			stages[e.Stage]++
			f.Add(e.JSON)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkPeek(t, data)
	})
}

// BenchmarkIsRequestReceived compares the peek with the decode it spares,
// over the generated stream's events of each kind: RequestReceived (the
// peek validates the whole event) and the others (it gives up at the
// stage member).
//
//	go test ./internal/auditjson -run '^$' -bench IsRequestReceived -cpu 1
func BenchmarkIsRequestReceived(b *testing.B) {
	g := gen.New(gen.Config{Seed: 7, AttackRatio: 0.02})
	lines := map[bool][][]byte{}
	for range 4000 {
		e := g.Next()
		rr := e.Stage == auditv1.StageRequestReceived
		lines[rr] = append(lines[rr], e.JSON)
	}
	for _, rr := range []bool{true, false} {
		name := "RequestReceived"
		if !rr {
			name = "other"
		}
		data := lines[rr]
		size := 0
		for _, d := range data {
			size += len(d)
		}
		b.Run(name+"/peek", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size / len(data)))
			for i := 0; b.Loop(); i++ {
				if IsRequestReceived(data[i%len(data)]) != rr {
					b.Fatal("wrong answer")
				}
			}
		})
		b.Run(name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size / len(data)))
			for i := 0; b.Loop(); i++ {
				var ev pipeline.Event
				if err := Decode(&ev, "c", data[i%len(data)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
