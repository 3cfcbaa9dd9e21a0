package detectors

import "github.com/auditpipe/auditpipe/internal/credential"

// jwtRecordFromBody reads a credential.JWTRecord, as ingest writes it in place
// of a token, out of a decoded body. It accepts what credential.ParseJWTRecord
// accepts from the same JSON: every field of the right type and redacted
// set to credential.KindJWT.
func jwtRecordFromBody(m map[string]any) (credential.JWTRecord, bool) {
	var r bodyReader
	rec := credential.JWTRecord{
		Redacted:    r.str(m["redacted"]),
		Signature:   r.str(m["signature"]),
		Verified:    r.str(m["verified"]),
		VerifyError: r.str(m["verify_error"]),
		ParseError:  r.str(m["parse_error"]),
		SHA256:      r.str(m["sha256"]),
	}
	if n := r.int64Ptr(m["length"]); n != nil {
		rec.Length = int(*n)
	}
	if h := r.obj(m["header"]); h != nil {
		rec.Header = credential.JWTHeader{
			Alg:   r.str(h["alg"]),
			Kid:   r.str(h["kid"]),
			Typ:   r.str(h["typ"]),
			Other: r.strList(h["other"]),
		}
	}
	if c := r.obj(m["claims"]); c != nil {
		rec.Claims = credential.JWTClaims{
			Iss: r.str(c["iss"]),
			Sub: r.str(c["sub"]),
			Aud: r.strList(c["aud"]),
			Exp: r.int64Ptr(c["exp"]),
			Iat: r.int64Ptr(c["iat"]),
			Nbf: r.int64Ptr(c["nbf"]),
			Jti: r.str(c["jti"]),
		}
		if k := r.obj(c["kubernetes.io"]); k != nil {
			rec.Claims.Kubernetes = &credential.JWTKubernetes{
				Namespace:      r.str(k["namespace"]),
				ServiceAccount: jwtObjectRefFromBody(&r, k["serviceaccount"]),
				Pod:            jwtObjectRefFromBody(&r, k["pod"]),
				Node:           jwtObjectRefFromBody(&r, k["node"]),
				Secret:         jwtObjectRefFromBody(&r, k["secret"]),
				WarnAfter:      r.int64Ptr(k["warnafter"]),
			}
		}
	}
	if r.bad || rec.Redacted != credential.KindJWT {
		return credential.JWTRecord{}, false
	}
	return rec, true
}

// jwtObjectRefFromBody reads a credential.JWTObjectRef; nil for null or absent.
func jwtObjectRefFromBody(r *bodyReader, v any) *credential.JWTObjectRef {
	m := r.obj(v)
	if m == nil {
		return nil
	}
	return &credential.JWTObjectRef{Name: r.str(m["name"]), UID: r.str(m["uid"])}
}
