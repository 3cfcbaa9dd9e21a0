package gen

import (
	"testing"
	"time"
)

func TestAppendMicro(t *testing.T) {
	f := func(in time.Time) {
		t.Helper()
		want := `"` + in.UTC().Format(microLayout) + `"`
		if got := string(appendMicro(nil, in)); got != want {
			t.Errorf("appendMicro(%v) = %s, want %s", in, got, want)
		}
	}
	f(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	f(time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC))
	f(time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC))
	f(time.Date(2026, 6, 30, 23, 59, 59, 123456000, time.FixedZone("CEST", 2*3600)))
	r := newRNG(1)
	for range 1000 {
		f(time.Unix(int64(r.between(0, 4_000_000_000)), int64(r.between(0, 999_999_999))))
	}
}

func TestAppendString(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := string(appendString(nil, in)); got != want {
			t.Errorf("appendString(%q) = %s, want %s", in, got, want)
		}
	}
	f("", `""`)
	f("/api/v1/pods?limit=500&watch=true", `"/api/v1/pods?limit=500\u0026watch=true"`)
	f(`RBAC: allowed by "x"`, `"RBAC: allowed by \"x\""`)
	f("a\\b\n\t\x01<>", `"a\\b\n\t\u0001\u003c\u003e"`)
	f("kubectl/v1.34.0 (darwin/arm64)", `"kubectl/v1.34.0 (darwin/arm64)"`)
}
