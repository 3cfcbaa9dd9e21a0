package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRunServesPubSub starts the command with the Pub/Sub flags and
// pushes a GKE LogEntry as a push subscription does: with its OIDC token,
// with a ?token=, and with a token it must refuse. A bindings file that
// does not load stops start-up.
func TestRunServesPubSub(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	jwksFile := filepath.Join(dir, "google-certs.json")
	os.WriteFile(jwksFile, jwks, 0o600)
	const aud, email = "https://ingest.acme.example/pubsub/prod-eu1", "auditpipe-push@acme-prod.iam.gserviceaccount.com"
	bindingsFile := filepath.Join(dir, "pubsub-bindings.yaml")
	os.WriteFile(bindingsFile, []byte("bindings:\n- name: gke-prod-eu1\n  audience: "+aud+"\n  email: "+email+"\n  cluster: prod-eu1\n"), 0o600)
	const queryToken = "5b2e9c1d7a4f08e3b6c2d9a1f7e4b0c8d3a6f2e9b5c1d7a0f4b8e3c6d2a9f1b4"
	tokenFile := filepath.Join(dir, "tokens")
	os.WriteFile(tokenFile, []byte(queryToken+",gke-prod-eu1-query,prod-eu1\n"), 0o600)

	sign := func(claims map[string]any) string {
		h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
		c, _ := json.Marshal(claims)
		in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
		d := sha256.Sum256([]byte(in))
		sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	now := time.Now()
	claims := map[string]any{"aud": aud, "email": email, "email_verified": true, "iss": "https://accounts.google.com",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "sub": "1"}
	good := sign(claims)
	claims["aud"] = "https://elsewhere.example/pubsub"
	wrongAud := sign(claims)

	entries, err := os.ReadFile("../../internal/cloud/gke/testdata/gcloud-logging-read.json")
	if err != nil {
		t.Fatal(err)
	}
	var list []json.RawMessage
	json.Unmarshal(entries, &list)
	var entry bytes.Buffer
	json.Compact(&entry, list[0])
	body := `{"message":{"data":"` + base64.StdEncoding.EncodeToString(entry.Bytes()) + `","messageId":"1"},"subscription":"projects/acme-prod/subscriptions/s"}`

	tlsAddr, metricsAddr := freeAddr(t), freeAddr(t)
	args := []string{"--listen", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile, "--token-file", tokenFile,
		"--pubsub-jwks-file", jwksFile, "--pubsub-bindings-file", bindingsFile,
		"--metrics-listen", metricsAddr, "--spool-dir", filepath.Join(dir, "spool")}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = run(ctx, args, &stderr) })
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	for i := 0; ; i++ {
		resp, err := client.Get("http://" + metricsAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 200 {
			cancel()
			wg.Wait()
			t.Fatalf("ingest did not start: %v, run: %v\n%s", err, runErr, stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	push := func(path, bearer string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://"+tlsAddr+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := push("/pubsub/prod-eu1", good); code != http.StatusOK {
		t.Errorf("OIDC push: %d", code)
	}
	if code := push("/pubsub/prod-eu1?token="+queryToken, ""); code != http.StatusOK {
		t.Errorf("query-token push: %d", code)
	}
	if code := push("/pubsub/prod-eu1", wrongAud); code != http.StatusUnauthorized {
		t.Errorf("wrong audience: %d", code)
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("run: %v\n%s", runErr, stderr.String())
	}
	if logs := stderr.String(); strings.Contains(logs, queryToken[:12]) || strings.Contains(logs, good[len(good)-20:]) {
		t.Error("a credential appears in the logs")
	}

	// A bindings file that does not load stops start-up.
	os.WriteFile(bindingsFile, []byte("bindings:\n- name: x\n  email: nobody\n"), 0o600)
	err = run(context.Background(), append(args[:len(args):len(args)], "--metrics-listen", ""), &stderr)
	if err == nil || !strings.Contains(err.Error(), "loading pubsub credentials") {
		t.Errorf("start-up with a broken bindings file: %v", err)
	}
}
