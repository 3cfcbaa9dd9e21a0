// Package compose_test checks the compose deployment, the Dockerfile it
// builds and the recommended audit policy without running Docker: every
// reference they make must resolve in this repository.
package compose_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"sigs.k8s.io/yaml"

	"github.com/auditpipe/auditpipe/internal/detectors"
)

// repoRoot is two levels up from deploy/compose, where go test runs.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		// The example env file must be enough to load the project: every
		// required variable is documented there.
		cli.WithEnvFiles(".env.example"),
		cli.WithDotEnv,
		cli.WithName("auditpipe"),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading compose.yaml with .env.example: %v", err)
	}
	return p
}

func TestComposeServices(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	want := []string{"alertmanager", "clickhouse", "detect", "grafana", "ingest", "ingest-tls", "kafka", "kafka-init", "prometheus"}
	var got []string
	for name := range p.Services {
		got = append(got, name)
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}

	hostPorts := map[string]string{}
	for name, s := range p.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if s.Build != nil {
			df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("service %s builds from %s: %v", name, df, err)
			}
			if s.Build.Target != name {
				t.Errorf("service %s builds Dockerfile target %q, want %q", name, s.Build.Target, name)
			}
		}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				rel, err := filepath.Rel(root, v.Source)
				if err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("service %s mounts %s, outside the repository", name, v.Source)
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s, which is not in the repository: %v", name, rel, err)
				}
				if !v.ReadOnly {
					t.Errorf("service %s mounts %s writable; repository files are mounted read-only", name, rel)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %s uses undeclared volume %s", name, v.Source)
				}
			}
		}
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			key := port.Published + "/" + port.Protocol
			if other, ok := hostPorts[key]; ok {
				t.Errorf("host port %s used by %s and %s", key, other, name)
			}
			hostPorts[key] = name
		}
		// Long-running services say whether they are healthy, except the
		// distroless ones, which have no shell to run a check with
		// (Prometheus scrapes their /metrics and alerts when they are down).
		long := s.Restart != "no" && s.Restart != ""
		if long && s.HealthCheck == nil && name != "ingest" && name != "detect" {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
}

// TestComposeDashboardsAreGenerated: Grafana provisions exactly the files
// `make dashboards` writes.
func TestComposeDashboardsAreGenerated(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	g := p.Services["grafana"]
	var dir string
	for _, v := range g.Volumes {
		if v.Target == "/var/lib/grafana/dashboards" {
			dir = v.Source
		}
	}
	if want := filepath.Join(root, "dashboards", "generated"); dir != want {
		t.Fatalf("grafana mounts %q at /var/lib/grafana/dashboards, want %s", dir, want)
	}
	prov, err := os.ReadFile("grafana/provisioning/dashboards/auditpipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(prov, []byte("path: /var/lib/grafana/dashboards")) {
		t.Errorf("dashboard provider does not read /var/lib/grafana/dashboards")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 4 {
		t.Errorf("%s holds %d dashboards, want at least 4: run make dashboards", dir, len(files))
	}
	// The home dashboard must be one of them.
	home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	if home == nil || !slices.Contains(files, filepath.Join(dir, filepath.Base(*home))) {
		t.Errorf("home dashboard %v is not a generated file", home)
	}
	// The datasource uids the dashboards refer to are provisioned.
	ds, err := os.ReadFile("grafana/provisioning/datasources/auditpipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"auditpipe-clickhouse", "auditpipe-prometheus"} {
		if !bytes.Contains(ds, []byte("uid: "+uid)) {
			t.Errorf("datasource %s is not provisioned", uid)
		}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if bytes.Contains(b, []byte(`"uid": "`+uid)) {
				goto next
			}
		}
		t.Errorf("no dashboard uses datasource %s", uid)
	next:
	}
}

// composeVar matches ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}
// and $VAR, not $$ (a literal dollar).
var composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+])[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// TestComposeVariables: every variable compose.yaml interpolates has a
// default or is documented in .env.example.
func TestComposeVariables(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	env, err := os.Open(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	sc := bufio.NewScanner(env)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			documented[k] = true
		}
	}
	used := map[string]bool{}
	for _, m := range composeVar.FindAllStringSubmatch(string(raw), -1) {
		if m[0] == "$$" {
			continue
		}
		name, mod := m[1], m[2]
		if name == "" {
			name = m[3]
		}
		used[name] = true
		hasDefault := strings.HasPrefix(mod, ":-") || strings.HasPrefix(mod, "-")
		if !hasDefault && !documented[name] {
			t.Errorf("compose.yaml uses $%s without a default, and .env.example does not document it", name)
		}
	}
	for k := range documented {
		if !used[k] {
			t.Errorf(".env.example documents %s, which compose.yaml does not use", k)
		}
	}
	// Without the env file, loading fails on the required secrets rather
	// than starting with empty passwords.
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithWorkingDirectory("."), cli.WithName("auditpipe"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(context.Background()); err == nil || !strings.Contains(err.Error(), "CLICKHOUSE_PASSWORD") &&
		!strings.Contains(err.Error(), "GRAFANA_ADMIN_PASSWORD") && !strings.Contains(err.Error(), "SLACK_WEBHOOK_URL") {
		t.Errorf("loading without .env = %v, want an error naming a required variable", err)
	}
}

// TestComposeReadOnlyUser: Grafana logs in as the read-only user the
// mounted users.d file defines, and ClickHouse gets that user's password
// from the variable the file names.
func TestComposeReadOnlyUser(t *testing.T) {
	p := loadProject(t)
	var xmlPath string
	for _, v := range p.Services["clickhouse"].Volumes {
		if strings.HasPrefix(v.Target, "/etc/clickhouse-server/users.d/") {
			xmlPath = v.Source
		}
	}
	if xmlPath == "" {
		t.Fatal("clickhouse mounts no users.d file")
	}
	x, err := os.ReadFile(xmlPath)
	if err != nil {
		t.Fatal(err)
	}
	user := p.Services["grafana"].Environment["CLICKHOUSE_READER_USER"]
	if user == nil || !bytes.Contains(x, []byte("<"+*user+">")) {
		t.Errorf("grafana's ClickHouse user %v is not defined in %s", user, xmlPath)
	}
	m := regexp.MustCompile(`from_env="([^"]+)"`).FindSubmatch(x)
	if m == nil {
		t.Fatalf("%s reads no password from the environment", xmlPath)
	}
	chPass := p.Services["clickhouse"].Environment[string(m[1])]
	gfPass := p.Services["grafana"].Environment["CLICKHOUSE_READER_PASSWORD"]
	if chPass == nil || gfPass == nil || *chPass == "" || *chPass != *gfPass {
		t.Errorf("clickhouse's %s and grafana's CLICKHOUSE_READER_PASSWORD differ or are unset", m[1])
	}
	ds, err := os.ReadFile("grafana/provisioning/datasources/auditpipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"username: $CLICKHOUSE_READER_USER", "password: $CLICKHOUSE_READER_PASSWORD"} {
		if !bytes.Contains(ds, []byte(want)) {
			t.Errorf("datasource provisioning lacks %q", want)
		}
	}
}

// TestComposeDetectorConfig: the detector config detect is given parses
// strictly.
func TestComposeDetectorConfig(t *testing.T) {
	if _, err := detectors.LoadConfig("detectors.yaml"); err != nil {
		t.Error(err)
	}
}

// dockerStage is one FROM … AS name section of the Dockerfile.
type dockerStage struct {
	from, name string
	lines      []string
}

func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var stages []dockerStage
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if strings.EqualFold(f[0], "FROM") {
			st := dockerStage{from: f[1]}
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				st.name = f[3]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	return stages
}

// TestDockerfile checks the stages compose builds: a Go build stage with
// CGO disabled, and per binary a minimal non-root image that copies the
// binary from it and runs it.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	byName := map[string]dockerStage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	build, ok := byName["build"]
	if !ok || !strings.HasPrefix(build.from, "golang:") {
		t.Fatalf("no golang build stage: %+v", stages)
	}
	buildText := strings.Join(build.lines, "\n")
	for _, bin := range []string{"ingest", "detect"} {
		if !strings.Contains(buildText, "CGO_ENABLED=0 go build") || !strings.Contains(buildText, "-o /out/"+bin+" ./cmd/"+bin) {
			t.Errorf("build stage does not build ./cmd/%s statically into /out/%s", bin, bin)
		}
		s, ok := byName[bin]
		if !ok {
			t.Errorf("no %s stage", bin)
			continue
		}
		if !strings.HasPrefix(s.from, "gcr.io/distroless/static") {
			t.Errorf("%s stage is FROM %s, want distroless static", bin, s.from)
		}
		var user, entry string
		copied := false
		for _, l := range s.lines {
			f := strings.Fields(l)
			switch strings.ToUpper(f[0]) {
			case "USER":
				user = f[1]
			case "ENTRYPOINT":
				entry = strings.Join(f[1:], " ")
			case "COPY":
				copied = copied || l == "COPY --from=build /out/"+bin+" /usr/local/bin/"+bin
			}
		}
		if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
			t.Errorf("%s stage runs as %q, want a non-root USER", bin, user)
		}
		if !copied {
			t.Errorf("%s stage does not copy /out/%s from the build stage", bin, bin)
		}
		if entry != `["/usr/local/bin/`+bin+`"]` {
			t.Errorf("%s ENTRYPOINT = %s", bin, entry)
		}
	}
}

// TestStaticBinaries builds what the Dockerfile builds and checks that the
// binaries need no dynamic loader, which distroless static lacks.
func TestStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	// One invocation with the Dockerfile's flags: the packages both
	// binaries share compile once. With cgo on by default, CGO_ENABLED=0
	// compiles the dependency graph again (cached after the first run).
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+string(filepath.Separator), "./cmd/ingest", "./cmd/detect")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ./cmd/ingest and ./cmd/detect with CGO_ENABLED=0: %v\n%s", err, out)
	}
	for _, bin := range []string{"ingest", "detect"} {
		f, err := elf.Open(filepath.Join(dir, bin))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: not static", bin)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s links %v: not static", bin, libs)
		}
		f.Close()
	}
}

// TestAuditPolicy decodes the recommended policy strictly, as the
// apiserver's types define it, then asks the apiserver's own rule
// evaluator which level each request a detector reads would get.
func TestAuditPolicy(t *testing.T) {
	raw, err := os.ReadFile("../kubernetes/audit-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p auditv1.Policy
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		t.Fatalf("decoding audit-policy.yaml strictly: %v", err)
	}
	if p.Kind != "Policy" || p.APIVersion != "audit.k8s.io/v1" {
		t.Errorf("kind/apiVersion = %s/%s", p.Kind, p.APIVersion)
	}
	if !slices.Contains(p.OmitStages, auditv1.StageRequestReceived) {
		t.Errorf("omitStages = %v, want RequestReceived", p.OmitStages)
	}
	internal, err := policy.LoadPolicyFromBytes(raw)
	if err != nil {
		t.Fatalf("the apiserver refuses the policy: %v", err)
	}
	eval := policy.NewPolicyRuleEvaluator(internal)
	f := func(detector, verb, group, resource, sub string, want auditinternal.Level) {
		t.Helper()
		attrs := authorizer.AttributesRecord{
			User: &user.DefaultInfo{Name: "alice@example.com", Groups: []string{"system:authenticated"}},
			Verb: verb, APIGroup: group, APIVersion: "v1", Resource: resource, Subresource: sub,
			Namespace: "payments", ResourceRequest: true,
		}
		got := eval.EvaluatePolicyRule(attrs).Level
		if got != want {
			t.Errorf("%s: %s %s/%s/%s audited at %s, want %s", detector, verb, group, resource, sub, got, want)
		}
	}
	rr, req, md := auditinternal.LevelRequestResponse, auditinternal.LevelRequest, auditinternal.LevelMetadata
	f("apparmor-unconfined, unsecured-image-pull", "create", "", "pods", "", rr)
	f("apparmor-unconfined", "patch", "", "pods", "ephemeralcontainers", rr)
	f("apparmor-unconfined", "update", "apps", "deployments", "", rr)
	f("apparmor-unconfined", "create", "batch", "cronjobs", "", rr)
	f("token-replay", "create", "", "serviceaccounts", "token", rr)
	f("token-replay", "delete", "", "pods", "", rr)
	f("unsigned-jwt", "create", "authentication.k8s.io", "tokenreviews", "", req)
	f("admission-policy-change", "delete", "admissionregistration.k8s.io", "validatingadmissionpolicies", "", rr)
	f("admission-policy-change", "patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", rr)
	f("admission-policy-change", "patch", "", "namespaces", "", rr)
	f("anonymous-access", "create", "rbac.authorization.k8s.io", "clusterrolebindings", "", rr)
	f("broad-selector, secrets never in bodies", "list", "", "secrets", "", md)
	f("legacy-token, secrets never in bodies", "create", "", "secrets", "", md)
	f("configmaps never in bodies", "get", "", "configmaps", "", md)
	f("stale-token, legacy-token (annotations)", "get", "", "services", "", md)

	anon := authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}},
		Verb: "get", Path: "/debug/pprof/",
	}
	if got := eval.EvaluatePolicyRule(anon).Level; got.Less(md) {
		t.Errorf("anonymous-access: anonymous GET /debug/pprof/ audited at %s, want at least Metadata", got)
	}
}
