package config

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	f := func(in string, want time.Duration, ok bool) {
		t.Helper()
		var d Duration
		err := json.Unmarshal([]byte(in), &d)
		if (err == nil) != ok {
			t.Fatalf("%s: err = %v, want ok=%v", in, err, ok)
		}
		if ok && d.Std() != want {
			t.Fatalf("%s: got %v, want %v", in, d.Std(), want)
		}
	}
	f(`"30s"`, 30*time.Second, true)
	f(`"10m"`, 10*time.Minute, true)
	f(`"1h30m"`, 90*time.Minute, true)
	f(`30`, 0, false)
	f(`"30"`, 0, false)
	f(`"`, 0, false)
	f(`null`, 0, false)

	b, err := json.Marshal(Duration(90 * time.Second))
	if err != nil || string(b) != `"1m30s"` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
}
