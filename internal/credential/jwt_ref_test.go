package credential

// The encoding/json implementation of parseHeader and parseClaims that
// jwtparse.go replaced, kept as the reference the differential tests and
// fuzz targets (jwt_test.go) compare the scanner-based parser with.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

func refParseHeader(seg []byte, h *JWTHeader) string {
	raw, err := b64(string(seg))
	if err != nil {
		return "header is not base64url"
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "header is not a JSON object"
	}
	var problems []string
	for k, v := range m {
		var dst *string
		switch k {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		default:
			h.Other = append(h.Other, k)
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			problems = append(problems, "header "+k+" is not a string")
		}
	}
	slices.Sort(h.Other)
	slices.Sort(problems)
	return strings.Join(problems, "; ")
}

func refParseClaims(seg []byte, c *JWTClaims) string {
	raw, err := b64(string(seg))
	if err != nil {
		return "claims are not base64url"
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "claims are not a JSON object"
	}
	var problems []string
	str := func(name string, dst *string) {
		if v, ok := m[name]; ok && json.Unmarshal(v, dst) != nil {
			problems = append(problems, "claim "+name+" is not a string")
		}
	}
	num := func(name string) *int64 {
		v, ok := m[name]
		if !ok {
			return nil
		}
		n, ok := refNumericDate(v)
		if !ok {
			problems = append(problems, "claim "+name+" is not a number")
			return nil
		}
		return &n
	}
	str("iss", &c.Iss)
	str("sub", &c.Sub)
	str("jti", &c.Jti)
	c.Exp, c.Iat, c.Nbf = num("exp"), num("iat"), num("nbf")
	if v, ok := m["aud"]; ok {
		// aud is a string or an array of strings (RFC 7519 §4.1.3).
		var one string
		if json.Unmarshal(v, &one) == nil {
			c.Aud = []string{one}
		} else if json.Unmarshal(v, &c.Aud) != nil {
			problems = append(problems, "claim aud is not a string or list of strings")
		}
	}
	var k JWTKubernetes
	if v, ok := m["kubernetes.io"]; ok {
		var w struct {
			Namespace      string          `json:"namespace"`
			ServiceAccount *JWTObjectRef   `json:"serviceaccount"`
			Pod            *JWTObjectRef   `json:"pod"`
			Node           *JWTObjectRef   `json:"node"`
			Secret         *JWTObjectRef   `json:"secret"`
			WarnAfter      json.RawMessage `json:"warnafter"`
		}
		if err := json.Unmarshal(v, &w); err != nil {
			problems = append(problems, "claim kubernetes.io is malformed")
		} else {
			k = JWTKubernetes{Namespace: w.Namespace, ServiceAccount: w.ServiceAccount, Pod: w.Pod, Node: w.Node, Secret: w.Secret}
			if len(w.WarnAfter) > 0 && string(w.WarnAfter) != "null" {
				if n, ok := refNumericDate(w.WarnAfter); ok {
					k.WarnAfter = &n
				} else {
					problems = append(problems, "claim kubernetes.io.warnafter is not a number")
				}
			}
		}
	}
	// Legacy secret-based tokens (before 1.24) use flat claim names.
	const legacy = "kubernetes.io/serviceaccount/"
	var ns, sa, saUID, secret string
	str(legacy+"namespace", &ns)
	str(legacy+"service-account.name", &sa)
	str(legacy+"service-account.uid", &saUID)
	str(legacy+"secret.name", &secret)
	if k.Namespace == "" {
		k.Namespace = ns
	}
	if k.ServiceAccount == nil && (sa != "" || saUID != "") {
		k.ServiceAccount = &JWTObjectRef{Name: sa, UID: saUID}
	}
	if k.Secret == nil && secret != "" {
		k.Secret = &JWTObjectRef{Name: secret}
	}
	if k != (JWTKubernetes{}) {
		c.Kubernetes = &k
	}
	slices.Sort(problems)
	return strings.Join(problems, "; ")
}

// numericDate reads a JSON number of seconds, truncating fractions (RFC
// 7519 allows them) and clamping to int64.
func refNumericDate(v json.RawMessage) (int64, bool) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, false
	}
	switch {
	case math.IsNaN(f):
		return 0, false
	case f >= math.MaxInt64:
		return math.MaxInt64, true
	case f <= math.MinInt64:
		return math.MinInt64, true
	}
	return int64(f), true
}

// refParseJWT is ParseJWT as it was, over refParseHeader and
// refParseClaims.
func refParseJWT(tok []byte) JWTRecord {
	rec := JWTRecord{Redacted: KindJWT, Length: len(tok), Signature: SignatureAbsent}
	var problems []string
	parts := bytes.Split(bytes.TrimSpace(tok), []byte{'.'})
	switch {
	case len(parts) == 5:
		problems = append(problems, "5 segments: an encrypted JWE, not a signed token")
	case len(parts) != 3:
		problems = append(problems, fmt.Sprintf("%d segments, want 3", len(parts)))
	}
	if len(parts) >= 3 && len(parts[2]) > 0 {
		rec.Signature = SignaturePresent
	}
	if p := refParseHeader(parts[0], &rec.Header); p != "" {
		problems = append(problems, p)
	}
	if len(parts) >= 2 {
		if p := refParseClaims(parts[1], &rec.Claims); p != "" {
			problems = append(problems, p)
		}
	}
	rec.ParseError = strings.Join(problems, "; ")
	return rec
}
