package credential

import "errors"

// Verify checks a JWS signature made with alg over signingInput (the
// token's "header.payload") with the key named kid, or every key when kid
// is empty. It is the check redaction uses for service-account tokens,
// exported so that other JWT consumers (ingest's Pub/Sub OIDC tokens)
// share one verifier and one JWKS parser rather than growing a second.
// The error is one of the VerifyErr* reasons.
func (s *KeySet) Verify(alg, kid string, signingInput, sig []byte) error {
	if why := s.verify(alg, kid, signingInput, sig); why != "" {
		return errors.New(why)
	}
	return nil
}
