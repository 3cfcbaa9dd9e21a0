package spool

import (
	"strings"
	"testing"
)

// TestConfigValidate: every problem is reported at once, each under its
// key, and the defaults fill what was left out.
func TestConfigValidate(t *testing.T) {
	err := ReaderConfig{Group: "../offsets"}.Validate()
	if err == nil {
		t.Fatal("a reader config without a dir and with a path as group passed")
	}
	for _, key := range []string{"spool.dir", "spool.group"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	if c := (ReaderConfig{Dir: "d"}).WithDefaults(); c.Group != DefaultGroup || c.PollInterval != DefaultPollInterval || c.Validate() != nil {
		t.Errorf("reader defaults: %+v", c)
	}
	if err := (WriterConfig{}).Validate(); err == nil || !strings.Contains(err.Error(), "spool.dir") {
		t.Errorf("writer without dir: %v", err)
	}
	if c := (WriterConfig{Dir: "d"}).WithDefaults(); c.SegmentBytes != DefaultSegmentBytes {
		t.Errorf("writer defaults: %+v", c)
	}
}
