package clickhouse

import (
	"testing"
	"time"
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
