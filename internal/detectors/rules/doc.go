// Package rules is auditpipe's user-rules engine: Falco-style YAML rule
// files whose conditions are expr (github.com/expr-lang/expr) expressions
// over a typed view of each audit event, compiled once and run by every
// detect worker as a pipeline.EventDetector.
//
// # Rule files
//
// A file has three optional top-level keys; any other key is an error, as
// is an unknown key inside an entry:
//
//	lists:
//	  - list: privileged_namespaces          # name
//	    items: [kube-system, kube-public]
//	    override: append                     # optional: append | replace
//	macros:
//	  - macro: is_exec
//	    condition: objectRef.subresource in ["exec", "attach"] && verb in ["create", "get"]
//	    override: replace                    # optional: append ((old) or (new)) | replace
//	rules:
//	  - rule: exec-into-pod                  # the finding's detector is "rule:exec-into-pod"
//	    description: Someone opened a shell in a running container.
//	    severity: high                       # info|low|medium|high|critical
//	    tags: [execution, falco]
//	    mitre: T1609
//	    condition: is_exec && objectRef.resource == "pods" && not (objectRef.namespace in privileged_namespaces)
//	    output: "{{ user.username }} opened {{ objectRef.subresource }} into {{ objectRef.namespace }}/{{ objectRef.name }}"
//	    enabled: true                        # default true
//	    defers_to: [admission-policy-change] # optional: detectors reporting the same signal
//	    exceptions:                          # suppress when all fields equal one tuple
//	      - name: ci_debug
//	        fields: [user.username, objectRef.namespace]
//	        values: [[ci-bot, staging]]
//	    examples:                            # run by `detect rules test`
//	      match:   [ {audit event}, ... ]
//	      nomatch: [ {audit event}, ... ]
//
// Files load in order and later files override earlier ones; the shipped
// pack (DefaultFiles) goes first. Redefining a name without override is an
// error. A list override appends items or replaces them; a macro override
// ORs its condition with the old one or replaces it; a rule override
// replaces the scalar keys it gives (description, severity, mitre, output,
// enabled), and then append ANDs its condition with the old one and adds
// tags, defers_to, examples and exceptions (an exception of the same name gets more
// values), while replace swaps those too.
//
// # Conditions
//
// Lists are used by name where a list literal could be, macros by name as
// booleans; both are inlined when the rule loads, may use each other, and a
// macro cycle is an error. The names a condition sees are the expr tags of
// Env: cluster, verb, stage, level, auditID, requestURI, path (without the
// query), selectors.labelSelector and selectors.fieldSelector (URL
// decoded), user.username, user.uid, user.groups, user.extra
// (map[string][]string), impersonatedUser.username and .groups (empty when
// absent), sourceIPs, sourceIP, userAgent, objectRef.resource,
// .subresource, .namespace, .name, .apiGroup, .apiVersion,
// responseStatus.code and .reason, annotations (map[string]string) and
// decision (the authorization.k8s.io/decision annotation).
//
// Bodies are read through request(path), response(path) and object(path)
// (the response, what was stored, else the request) and has(path); the
// path is a literal such as "spec.containers[*].securityContext.privileged"
// or "metadata.labels[\"app\"]", checked at load time. A path with [*]
// yields a list. A body is decoded at most once per event, and only when a
// rule that reads it is evaluated. Besides expr's builtins (any, all,
// filter, hasPrefix, hasSuffix, ...) there are glob(s, pattern), where *
// matches any run of characters, cidr(ip, "10.0.0.0/8"), and
// csrSubject(object("spec.request")), the subject (.commonName,
// .organizations) a CertificateSigningRequest asks for.
//
// A field missing from a body is nil, and wherever expr would fail on nil
// because it needs a typed value, it reads as the zero value of that type,
// so that a missing field never turns a detection off: "" for
// hasPrefix(c.image, "x"), 0 for replicas > 3, false for !x or a
// predicate's result, an empty list for any(x, ...) or len(x), an empty
// map for keys(x); a member of a missing object is missing too
// (c.securityContext.privileged without a securityContext). Where expr
// accepts nil it keeps its meaning, so that only what used to be an error
// changes: ==, !=, in, contains, startsWith, endsWith and matches see nil,
// which equals only nil and matches nothing. So object("x") == nil, like
// has(path), tells a missing field from an empty one, and
// c.securityContext.allowPrivilegeEscalation != false fires when it is
// missing, as Kubernetes defaults it to true. A value of the wrong type (a
// string where a list is needed) is not missing, and still fails.
//
// Everything is type-checked at load time: an unknown field, macro or list,
// a type mismatch, a bad severity, or an output that does not compile is
// reported as file:line:col: message, all problems at once.
//
// # Limits
//
// Macros and lists are inlined textually, so a macro that uses another
// twice doubles in size, and forty such macros would expand to 2^41 nodes.
// Sizes are computed before anything is inlined (memoized per macro, so in
// time linear in the files), and a load is refused with an error naming the
// macro, rule, output or exception when one condition would exceed
// MaxExpandedNodes (25,000 expression nodes, counting one per list item
// and one per macro use) or the whole set MaxSetNodes (250,000). The
// default pack is about 2,600 nodes, the largest rule under 200. The JSON
// of all examples is held to MaxExampleBytes (16 MiB), as a YAML alias
// copies an example at every use. Loading
// takes a context (LoadContext), checked between files, macros and rules,
// so an interrupted load returns promptly.
//
// # Evaluation
//
// A Set judges only the authoritative stage of a request
// (pipeline.Event.IsAuthoritative). At load time each condition's
// top-level conjunction is read for the values it requires of verb,
// objectRef.resource, objectRef.subresource and user.username; rules are
// bucketed by verb and resource, so an event is evaluated only against the
// rules that could fire on it. A finding carries the rule's severity and
// MITRE technique, the rendered output as summary, and as evidence the
// fields the condition reads (source event, request or response) and the
// rule's tags (source "rule": pipeline.Finding has no tags field).
//
// One event raises one finding per signal: a rule whose defers_to names a
// detector id (a built-in detector such as broad-selector, or another
// rule's "rule:NAME") makes no finding on an event that detector already
// reported. detect run and detect scan run the built-in detectors first and
// pass their findings on, so a rule can defer to them; where the detector is
// off (detect rules test, a Set used alone) the rule fires as usual. An
// evaluation error (a value of the wrong type, an index out of range) is
// counted in auditpipe_rules_eval_errors_total{rule} and logged at most
// once per rule per EvalErrorLogInterval, and the rule does not fire
// (unless the error is in an exception: an error never suppresses).
//
// A rule with a new_terms block is a first-seen rule (newterms.go): it
// fires when the term its fields make is new for its key within its
// history, which depends on what came before, so Detect skips it; Terms
// matches it statelessly and a TermsDetector judges the matches in event
// order against a firstseen.Tracker.
//
// Watcher polls the rule files and swaps in a new Set when their content
// changes and loads; a set that does not load is logged and counted, and
// the previous one keeps running. Cancelling the context given to Run
// stops a reload in progress.
package rules
