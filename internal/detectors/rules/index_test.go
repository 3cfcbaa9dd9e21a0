package rules

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// userRuleTemplates are the generated user rules of internal/bench (kept in
// step by hand): team-scoped rules testing requestURI prefixes, cidr
// ranges of the source address and user-agent substrings, the ones the old
// index could not place.
var userRuleTemplates = []string{
	`verb in ["delete", "deletecollection"] && objectRef.resource == "configmaps" && objectRef.namespace == "team-%[1]d"`,
	`objectRef.resource == "secrets" && verb in ["get", "list", "watch"] && user.username == "system:serviceaccount:team-%[1]d:app"`,
	`requestURI startsWith "/apis/apps/v1/namespaces/team-%[1]d/" && not (user.username startsWith "system:")`,
	`objectRef.resource == "pods" && objectRef.subresource in ["exec", "attach"] && objectRef.namespace == "team-%[1]d"`,
	`sourceIP != "" && cidr(sourceIP, "203.0.%[2]d.0/24") && verb != "get"`,
	`userAgent contains "deploy-tool-%[1]d/" && objectRef.resource in ["deployments", "statefulsets"]`,
	`decision == "forbid" && user.username == "user-%[1]d@example.com"`,
	`objectRef.resource == "pods" && verb == "create" && objectRef.namespace == "team-%[1]d" && has("spec.hostNetwork")`,
}

func userRules(n int) []byte {
	var b bytes.Buffer
	b.WriteString("rules:\n")
	for i := range n {
		cond := fmt.Sprintf(userRuleTemplates[i%len(userRuleTemplates)], i, i%256)
		fmt.Fprintf(&b, "  - rule: user-rule-%d\n    severity: low\n    condition: '%s'\n", i, strings.ReplaceAll(cond, "'", "''"))
		b.WriteString("    output: \"{{ user.username }} {{ verb }} {{ objectRef.resource }}\"\n")
	}
	return b.Bytes()
}

// stream decodes n events of the generator.
func stream(t testing.TB, seed int64, n int) []pipeline.Event {
	t.Helper()
	g := gen.New(gen.Config{Seed: seed, AttackRatio: 0.05})
	events := make([]pipeline.Event, n)
	for i := range events {
		if err := auditjson.Decode(&events[i], "prod", g.Next().JSON); err != nil {
			t.Fatal(err)
		}
	}
	return events
}

// differential runs s over events with and without the index and fails on
// the first event whose findings differ in any field. It returns the
// findings and the rule evaluations the index saved.
func differential(t *testing.T, s *Set, events []pipeline.Event) (findings, skipped int) {
	t.Helper()
	var fast, slow []pipeline.Finding
	for i := range events {
		ev := &events[i]
		fast = s.detect(ev, fast[:0], false)
		slow = s.detect(ev, slow[:0], true)
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("event %d (%s %s by %s from %s): indexed %v, every rule %v", i, ev.Verb, ev.RequestURI, ev.User.Username, ev.SourceIP(), ids(fast), ids(slow))
		}
		findings += len(slow)
		if ev.IsAuthoritative() {
			skipped += s.Len() - evaluated(s, ev)
		}
	}
	return findings, skipped
}

// TestIndexNeverChangesResults: the default pack with 1,000 generated
// rules of each generator (the rules tests' and internal/bench's, which
// test cidr, userAgent and requestURI), indexed and not, over generated
// traffic, find exactly the same.
func TestIndexNeverChangesResults(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, File{Name: "gen.yaml", Data: generatedRules(1000)}, File{Name: "user.yaml", Data: userRules(1000)})
	s, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	n := 10000
	if testing.Short() {
		n = 2000
	}
	found, skipped := differential(t, s, stream(t, 11, n))
	if found == 0 {
		t.Fatal("no rule fired on the whole stream: the comparison proves nothing")
	}
	t.Logf("%d events, %d findings, %d rule evaluations skipped by the index", n, found, skipped)
}

// TestIndexFilesEveryUserRule: no generated user rule is evaluated on every
// event; each is filed under a literal (the cidr and requestURI rules
// included), and each rule's requirements are what its template says.
func TestIndexFilesEveryUserRule(t *testing.T) {
	s, err := Load(File{Name: "user.yaml", Data: userRules(16)})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range s.index.always {
		if w != 0 {
			t.Errorf("rules %b of word %d are evaluated on every event", w, i)
		}
	}
	want := map[int]string{
		2: `[[{requestURI prefix /apis/apps/v1/namespaces/team-2/}]]`,
		4: `[[{sourceIP cidr 203.0.4.0/24}]]`,
		5: `[[{resource equal deployments} {resource equal statefulsets}]]`,
		6: `[[{username equal user-6@example.com}]]`,
	}
	for i, w := range want {
		if got := describe(s.rules[i].reqs); got != w {
			t.Errorf("rule %d: requirements %s, want %s", i, got, w)
		}
	}
}

var fieldNames = func() map[int]string {
	m := map[int]string{}
	for path, f := range indexedFields {
		m[f] = path[strings.LastIndexByte(path, '.')+1:]
	}
	return m
}()

func describe(reqs []requirement) string {
	kinds := []string{"equal", "prefix", "member", "cidr"}
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range reqs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('[')
		for j, t := range r {
			if j > 0 {
				b.WriteByte(' ')
			}
			v := t.value
			if t.kind == testCIDR {
				v = t.prefix.String()
			}
			fmt.Fprintf(&b, "{%s %s %s}", fieldNames[t.field], kinds[t.kind], v)
		}
		b.WriteByte(']')
	}
	b.WriteByte(']')
	return b.String()
}

// TestIndexRequirements checks what requirementsOf reads from conditions,
// including what it must not read: tests under a not, or an or with a
// test it does not understand, require nothing.
func TestIndexRequirements(t *testing.T) {
	cases := map[string]string{
		`verb == "get" && "pods" == objectRef.resource`:                   `[[{verb equal get}] [{resource equal pods}]]`,
		`objectRef.namespace in ["a", "b"] || user.username == "x"`:       `[[{namespace equal a} {namespace equal b} {username equal x}]]`,
		`hasPrefix(userAgent, "kubectl/") and glob(requestURI, "/api/*")`: `[[{userAgent prefix kubectl/}] [{requestURI prefix /api/}]]`,
		`glob(path, "/healthz")`:                                          `[[{path equal /healthz}]]`,
		`"system:masters" in user.groups`:                                 `[[{groups member system:masters}]]`,
		`cidr(sourceIP, "10.1.2.3/8") && cidr(sourceIP, "2001:db8::1")`:   `[[{sourceIP cidr 10.0.0.0/8}] [{sourceIP cidr 2001:db8::1/128}]]`,
		`verb in []`:          `[[]]`,
		`not (verb == "get")`: `[]`,
		`verb == "get" || userAgent contains "curl"`:                     `[]`,
		`verb != "get" && objectRef.name startsWith "kube-"`:             `[[{name prefix kube-}]]`,
		`cidr(sourceIP, "not-a-range") && cidr(userAgent, "10.0.0.0/8")`: `[]`,
		`user.username in user.groups && "x" in impersonatedUser.groups`: `[]`,
		`objectRef?.resource == "pods"`:                                  `[]`,
	}
	c := &compiler{cfgBool: newConfig(true), cfgAny: newConfig(false), paths: map[string]*bodyPath{}}
	for cond, want := range cases {
		tree, ok := c.parse(condPart{text: cond}, cond, 0, false)
		if !ok {
			t.Fatalf("%s does not parse", cond)
		}
		if got := describe(requirementsOf(tree.Node)); got != want {
			t.Errorf("%s:\n got %s\nwant %s", cond, got, want)
		}
	}
}

// TestIndexProperty generates random rules from the values of a generated
// stream (so that many fire), mixing every test the index reads with
// tests it does not, under and, or and not, and checks indexed and
// unindexed evaluation agree on every event.
func TestIndexProperty(t *testing.T) {
	events := stream(t, 5, 3000)
	pick := func(r *rand.Rand, f func(ev *pipeline.Event) string) string {
		for range 20 {
			if v := f(&events[r.IntN(len(events))]); v != "" {
				return v
			}
		}
		return "x"
	}
	res := func(ev *pipeline.Event) string {
		if ev.ObjectRef == nil {
			return ""
		}
		return ev.ObjectRef.Resource
	}
	ns := func(ev *pipeline.Event) string {
		if ev.ObjectRef == nil {
			return ""
		}
		return ev.ObjectRef.Namespace
	}
	group := func(ev *pipeline.Event) string {
		if len(ev.User.Groups) == 0 {
			return ""
		}
		return ev.User.Groups[len(ev.User.Groups)-1]
	}
	cut := func(r *rand.Rand, s string) string { return s[:r.IntN(len(s)+1)] }
	tests := []func(r *rand.Rand) string{
		func(r *rand.Rand) string {
			return fmt.Sprintf("verb == %q", pick(r, func(e *pipeline.Event) string { return e.Verb }))
		},
		func(r *rand.Rand) string {
			return fmt.Sprintf("objectRef.resource in [%q, %q]", pick(r, res), pick(r, res))
		},
		func(r *rand.Rand) string { return fmt.Sprintf("%q == objectRef.namespace", pick(r, ns)) },
		func(r *rand.Rand) string {
			return fmt.Sprintf("user.username startsWith %q", cut(r, pick(r, func(e *pipeline.Event) string { return e.User.Username })))
		},
		func(r *rand.Rand) string {
			return fmt.Sprintf("hasPrefix(userAgent, %q)", cut(r, pick(r, func(e *pipeline.Event) string { return e.UserAgent })))
		},
		func(r *rand.Rand) string {
			return fmt.Sprintf("glob(requestURI, %q)", cut(r, pick(r, func(e *pipeline.Event) string { return e.RequestURI }))+[]string{"*", "?*", ""}[r.IntN(3)])
		},
		func(r *rand.Rand) string { return fmt.Sprintf("%q in user.groups", pick(r, group)) },
		func(r *rand.Rand) string {
			ip := netip.MustParseAddr(pick(r, func(e *pipeline.Event) string { return e.SourceIP() }))
			if r.IntN(4) == 0 {
				ip = netip.AddrFrom16(ip.As16()) // ::ffff:a.b.c.d
			}
			p, _ := ip.Prefix(r.IntN(ip.BitLen() + 1))
			if r.IntN(3) == 0 {
				return fmt.Sprintf("cidr(sourceIP, %q)", ip.String())
			}
			return fmt.Sprintf("cidr(sourceIP, %q)", p.String())
		},
		func(r *rand.Rand) string { return "responseStatus.code >= 400" },
		func(r *rand.Rand) string {
			return fmt.Sprintf("userAgent contains %q", []string{"kubectl", "curl", "kube-"}[r.IntN(3)])
		},
		func(r *rand.Rand) string { return `object("metadata.labels[\"app\"]") != nil` },
	}
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString("rules:\n")
	for i := range 600 {
		var conj []string
		for range 1 + r.IntN(3) {
			s := tests[r.IntN(len(tests))](r)
			switch r.IntN(6) {
			case 0:
				s = "(" + s + " || " + tests[r.IntN(len(tests))](r) + ")"
			case 1:
				s = "not (" + s + ")"
			}
			conj = append(conj, s)
		}
		fmt.Fprintf(&b, "  - rule: p-%d\n    severity: low\n    condition: '%s'\n", i, strings.ReplaceAll(strings.Join(conj, " && "), "'", "''"))
	}
	s, err := Load(File{Name: "p.yaml", Data: b.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	found, skipped := differential(t, s, events)
	var indexed int
	for _, rl := range s.rules {
		if len(rl.reqs) > 0 {
			indexed++
		}
	}
	if found == 0 || skipped == 0 || indexed < len(s.rules)/2 {
		t.Fatalf("%d findings, %d evaluations skipped, %d of %d rules indexed: the comparison proves little", found, skipped, indexed, len(s.rules))
	}
	t.Logf("%d findings, %d evaluations skipped, %d of %d rules indexed", found, skipped, indexed, len(s.rules))
}

// TestIndexReadsOrsOfConjunctions: the requirements the index now reads
// beyond single tests, each shown with the look-alike it must not read.
// An or of conjunctions and a conditional require what each side does;
// an or with a side that requires nothing requires nothing.
func TestIndexReadsOrsOfConjunctions(t *testing.T) {
	cases := map[string]string{
		`(objectRef.resource == "pods" && objectRef.subresource == "exec") || (objectRef.resource == "nodes" && objectRef.subresource == "proxy")`: `[[{subresource equal exec} {subresource equal proxy}] [{resource equal pods} {subresource equal proxy}] [{subresource equal exec} {resource equal nodes}] [{resource equal pods} {resource equal nodes}]]`,
		`(objectRef.resource == "pods" && objectRef.subresource == "exec") || responseStatus.code == 101`:                                          `[]`,
		`objectRef.resource == "pods" ? objectRef.subresource == "" : objectRef.subresource == "scale"`:                                            `[[{resource equal pods} {subresource equal scale}] [{subresource equal } {subresource equal scale}]]`,
		`objectRef.resource == "pods" ? objectRef.subresource == "" : verb != "get"`:                                                               `[]`,
		`impersonatedUser.username != "" && verb == "get"`:                                                                                         `[[{username nonempty }] [{verb equal get}]]`,
		`user.username != "" && verb == "get"`:                                                                                                     `[[{verb equal get}]]`,
		`!any(["10.0.0.0/8", "fd00::/8", "bad"], {cidr(sourceIP, #)})`:                                                                             `[[{sourceIP notcidrs [10.0.0.0/8 fd00::/8]}]]`,
		`!any(["10.0.0.0/8"], {cidr(userAgent, #)}) && !any(["10.0.0.0/8"], {cidr(sourceIP, # + "")})`:                                             `[]`,
	}
	c := &compiler{cfgBool: newConfig(true), cfgAny: newConfig(false), paths: map[string]*bodyPath{}}
	for cond, want := range cases {
		tree, ok := c.parse(condPart{text: cond}, cond, 0, false)
		if !ok {
			t.Fatalf("%s does not parse", cond)
		}
		if got := describeAll(requirementsOf(tree.Node)); got != want {
			t.Errorf("%s:\n got %s\nwant %s", cond, got, want)
		}
	}
}

// describeAll is describe with the test kinds describe does not name.
func describeAll(reqs []requirement) string {
	kinds := []string{"equal", "prefix", "member", "cidr", "nonempty", "notcidrs"}
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range reqs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('[')
		for j, t := range r {
			if j > 0 {
				b.WriteByte(' ')
			}
			v := t.value
			switch t.kind {
			case testCIDR:
				v = t.prefix.String()
			case testNotCIDRs:
				v = fmt.Sprint(t.prefixes)
			}
			fmt.Fprintf(&b, "{%s %s %s}", fieldNames[t.field], kinds[t.kind], v)
		}
		b.WriteByte(']')
	}
	b.WriteByte(']')
	return b.String()
}

// TestIndexNotCIDRsIsNeverFiled: a rule whose only requirement is the
// source being outside some networks cannot be found by the index (it
// looks events up by the values they have) and is evaluated on every
// event, and skipped where the source is inside one; the same rule with a
// literal the index can file is not evaluated on every event.
func TestIndexNotCIDRsIsNeverFiled(t *testing.T) {
	s, err := Load(File{Name: "n.yaml", Data: []byte(`rules:
  - rule: public
    severity: low
    condition: '!any(["10.0.0.0/8"], {cidr(sourceIP, #)})'
  - rule: public-get
    severity: low
    condition: 'verb == "get" && !any(["10.0.0.0/8"], {cidr(sourceIP, #)})'
`)})
	if err != nil {
		t.Fatal(err)
	}
	if s.index.always[0] != 1 {
		t.Fatalf("always %b, want only the first rule", s.index.always[0])
	}
	for _, tc := range []struct {
		ip, verb string
		want     int
	}{{"10.1.2.3", "get", 0}, {"203.0.113.9", "get", 2}, {"203.0.113.9", "list", 1}, {"not-an-ip", "get", 2}} {
		ev := &pipeline.Event{}
		ev.Verb, ev.Stage, ev.SourceIPs = tc.verb, "ResponseComplete", []string{tc.ip}
		if got := len(s.Detect(ev, nil)); got != tc.want || evaluated(s, ev) != tc.want {
			t.Errorf("%s %s: %d findings, %d evaluated, want %d", tc.ip, tc.verb, got, evaluated(s, ev), tc.want)
		}
	}
}

// TestIndexPropertyDisjunctions is TestIndexProperty for the shapes read
// by disjunctionRequirements and notInCIDRs: ors of conjunctions,
// conditionals and lists of networks the source must be outside of, over
// values of a generated stream, indexed and not, agree on every event.
func TestIndexPropertyDisjunctions(t *testing.T) {
	events := stream(t, 6, 3000)
	r := rand.New(rand.NewPCG(3, 4))
	val := func(f func(ev *pipeline.Event) string) string {
		for range 20 {
			if v := f(&events[r.IntN(len(events))]); v != "" {
				return v
			}
		}
		return "x"
	}
	leaf := func() string {
		switch r.IntN(6) {
		case 0:
			return fmt.Sprintf("verb == %q", val(func(e *pipeline.Event) string { return e.Verb }))
		case 1:
			return fmt.Sprintf("objectRef.resource == %q", val(func(e *pipeline.Event) string {
				if e.ObjectRef == nil {
					return ""
				}
				return e.ObjectRef.Resource
			}))
		case 2:
			return fmt.Sprintf("objectRef.subresource in [%q, \"\"]", []string{"status", "exec", "log", "proxy"}[r.IntN(4)])
		case 3:
			return fmt.Sprintf("user.username startsWith %q", []string{"system:", "system:node:", "alice", "system:serviceaccount:"}[r.IntN(4)])
		case 4:
			return `impersonatedUser.username != ""`
		}
		return "responseStatus.code < 300"
	}
	nets := func() string {
		var l []string
		for range 1 + r.IntN(3) {
			ip := netip.MustParseAddr(val(func(e *pipeline.Event) string { return e.SourceIP() }))
			p, _ := ip.Prefix(r.IntN(ip.BitLen() + 1))
			l = append(l, fmt.Sprintf("%q", p.String()))
		}
		return "!any([" + strings.Join(l, ", ") + "], {cidr(sourceIP, #)})"
	}
	var b bytes.Buffer
	b.WriteString("rules:\n")
	for i := range 400 {
		var cond string
		switch r.IntN(3) {
		case 0:
			cond = fmt.Sprintf("(%s && %s) || (%s && %s)", leaf(), leaf(), leaf(), leaf())
		case 1:
			cond = fmt.Sprintf("%s ? %s : (%s && %s)", leaf(), leaf(), leaf(), leaf())
		default:
			cond = fmt.Sprintf("%s && %s", leaf(), nets())
		}
		if r.IntN(3) == 0 {
			cond += " && " + leaf()
		}
		fmt.Fprintf(&b, "  - rule: d-%d\n    severity: low\n    condition: '%s'\n", i, strings.ReplaceAll(cond, "'", "''"))
	}
	s, err := Load(File{Name: "d.yaml", Data: b.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	found, skipped := differential(t, s, events)
	if found == 0 || skipped == 0 {
		t.Fatalf("%d findings, %d evaluations skipped: the comparison proves little", found, skipped)
	}
	t.Logf("%d findings, %d evaluations skipped", found, skipped)
}

// TestSubstringsSkipConditions: a rule requiring a substring of the user
// agent is not run on an event whose user agent lacks it, though the
// index finds it by its resource; a look-alike under an or requires
// nothing, and both find what every rule finds.
func TestSubstringsSkipConditions(t *testing.T) {
	s, err := Load(File{Name: "c.yaml", Data: []byte(`rules:
  - rule: tool
    severity: low
    condition: 'userAgent contains "deploy-tool/" && objectRef.resource == "deployments"'
  - rule: tool-or
    severity: low
    condition: '(userAgent contains "deploy-tool/" || verb == "get") && objectRef.resource == "deployments"'
`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := describeAll([]requirement{s.rules[0].substrings, s.rules[1].substrings}); got != `[[{userAgent equal deploy-tool/}] []]` {
		t.Fatalf("substrings %s", got)
	}
	for _, tc := range []struct {
		ua        string
		runs, hit int
	}{{"kubectl/v1.34.0", 1, 0}, {"x deploy-tool/1.2", 2, 2}} {
		ev := &pipeline.Event{}
		ev.Verb, ev.Stage, ev.UserAgent = "create", "ResponseComplete", tc.ua
		ev.ObjectRef = &auditv1.ObjectReference{Resource: "deployments"}
		st := s.pool.Get().(*state)
		st.reset(ev, true)
		v := st.values(s.reqTable)
		runs := 0
		for _, r := range s.rules {
			if ruleRequirementsHold(r, &v) {
				runs++
			}
		}
		st.release()
		s.pool.Put(st)
		fast, slow := s.detect(ev, nil, false), s.detect(ev, nil, true)
		if runs != tc.runs || len(fast) != tc.hit || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s: %d rules run, %d findings (every rule: %d), want %d and %d", tc.ua, runs, len(fast), len(slow), tc.runs, tc.hit)
		}
	}
}
