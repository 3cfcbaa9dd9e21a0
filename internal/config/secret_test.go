package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretRedacts(t *testing.T) {
	s := Secret("https://hooks.slack.com/services/T0/B0/very-secret")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "url", s)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "url", s)
	j, _ := json.Marshal(struct{ S Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %+v", s, s, s, s), string(j), logs.String()} {
		if strings.Contains(out, "very-secret") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "https://hooks.slack.com/services/T0/B0/very-secret" {
		t.Errorf("Reveal lost the value")
	}
}
