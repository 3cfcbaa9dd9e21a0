package clickhouse

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestEventRowTimes(t *testing.T) {
	f := func(received, stage string, wantTime time.Time, wantUS uint64) {
		t.Helper()
		ev := decodeEvent(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"3a1f6c2e-9b7d-4e8a-a0c1-5d2e4f6a8b9c","stage":"ResponseComplete","requestURI":"/healthz","verb":"get","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["10.0.0.1"],"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"`+received+`","stageTimestamp":"`+stage+`"}`)
		var r eventRow
		r.fill(ev)
		if !r.time.Equal(wantTime) || r.timeUS != wantUS {
			t.Errorf("received=%q stage=%q: time=%v time_us=%d, want %v and %d", received, stage, r.time, r.timeUS, wantTime, wantUS)
		}
		if len(r.values()) != len(eventColumns) {
			t.Fatalf("eventRow has %d values for %d columns", len(r.values()), len(eventColumns))
		}
	}
	// The stage timestamp is the row's time.
	f("2026-11-26T09:00:00.000001Z", "2026-11-26T09:00:00.250000Z",
		time.Date(2026, 11, 26, 9, 0, 0, 250000000, time.UTC), 1795683600250000)
	// A missing stage timestamp falls back to the receive time, as findings do.
	f("2026-11-26T09:00:00.000001Z", "",
		time.Date(2026, 11, 26, 9, 0, 0, 1000, time.UTC), 1795683600000001)
	// Nonsense times are clamped to DateTime's range rather than failing
	// the batch they are in.
	f("", "", time.Unix(0, 0).UTC(), 0)
	f("1969-07-20T20:17:40Z", "1969-07-20T20:17:40Z", time.Unix(0, 0).UTC(), 0)
	f("2200-01-01T00:00:00Z", "2200-01-01T00:00:00Z", maxDateTime, 7258118400000000)
}

func TestEventRowOptionalFields(t *testing.T) {
	// An anonymous, rejected request: no user, no extra, no objectRef
	// name, no annotations.
	ev := loadEvent(t, "anonymous_401.json")
	var r eventRow
	r.fill(ev)
	if r.groups == nil || r.annotationKeys == nil || r.annotationVals == nil {
		t.Errorf("nil arrays in row: groups=%#v keys=%#v vals=%#v", r.groups, r.annotationKeys, r.annotationVals)
	}
	if r.resource != "deployments" || r.apiGroup != "apps" || r.code != 401 || r.username != "" || r.credentialID != "" {
		t.Errorf("row = %+v", r)
	}
}

// TestNativeCellsMatchValues checks that the cells Write appends (pointers
// and []*string) hold, row after row of a reused row, exactly what
// values() returns: a cell at the wrong position or left over from the
// previous row would store a wrong column.
func TestNativeCellsMatchValues(t *testing.T) {
	deref := func(c any) any {
		switch v := c.(type) {
		case *time.Time:
			return *v
		case *uint64:
			return *v
		case *int32:
			return *v
		case *uint8:
			return *v
		case *string:
			return *v
		case []*string:
			out := make([]string, len(v))
			for i, p := range v {
				out[i] = *p
			}
			return out
		}
		t.Fatalf("cell of type %T", c)
		return nil
	}
	check := func(what string, cells, values []any, cols []string) {
		t.Helper()
		if len(cells) != len(cols) || len(values) != len(cols) {
			t.Fatalf("%s: %d cells, %d values for %d columns", what, len(cells), len(values), len(cols))
		}
		for i := range cols {
			if got, want := deref(cells[i]), values[i]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s column %s: cell %#v, value %#v", what, cols[i], got, want)
			}
		}
	}
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.3})
	var erow eventRow
	var frow findingRow
	for i := range 300 {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
			t.Fatal(err)
		}
		if i%7 == 3 {
			// An event with several annotations after ones with fewer.
			ev.Annotations = map[string]string{"b": "2", "a": "1", pipeline.AnnotationReason: "r", "z": ""}
		}
		erow.fill(&ev)
		check("event "+strconv.Itoa(i), erow.nativeCells(), erow.values(), eventColumns)
		f := pipeline.NewFinding("d", &ev, strconv.Itoa(i))
		f.Severity = pipeline.Severity(i % 4)
		frow.fill(&f)
		check("finding "+strconv.Itoa(i), frow.nativeCells(), frow.values(), findingColumns)
	}
}
