package rules

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
)

// CSRSubjectEnv is the subject a certificate signing request asks for, as
// csrSubject reads it from spec.request. The apiserver's client-certificate
// authenticator makes the common name the username and each organization a
// group, so Organizations holding system:masters asks for cluster-admin.
type CSRSubjectEnv struct {
	CommonName    string   `expr:"commonName"`
	Organizations []string `expr:"organizations"`
}

// csrSubjectFunc is the type of Env.CSRSubject (an alias, so that expr sees
// a plain function).
type csrSubjectFunc = func(request string) CSRSubjectEnv

// maxCSRRequest bounds the spec.request a rule decodes. A CSR with an RSA
// 4096 key and a few names is under 4 KiB of base64; anything much larger
// is not a request the signers would take, and parsing it costs CPU an
// attacker controls.
const maxCSRRequest = 64 << 10

// csrSubject decodes a CertificateSigningRequest's spec.request (in JSON the
// base64 of a PEM "CERTIFICATE REQUEST" block) and returns the subject it
// asks for. The signature is not checked: the rule asks what is requested,
// and the apiserver has already refused a CSR whose signature is wrong.
// Anything that does not decode is the empty subject, which matches
// nothing.
func csrSubject(request string) CSRSubjectEnv {
	if request == "" || len(request) > maxCSRRequest {
		return CSRSubjectEnv{}
	}
	raw, err := base64.StdEncoding.DecodeString(request)
	if err != nil {
		return CSRSubjectEnv{}
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return CSRSubjectEnv{}
	}
	cr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return CSRSubjectEnv{}
	}
	return CSRSubjectEnv{CommonName: cr.Subject.CommonName, Organizations: cr.Subject.Organization}
}
