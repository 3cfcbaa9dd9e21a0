package main

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// detectorsUID is the per-detector dashboard's uid.
const detectorsUID = "auditpipe-detectors"

// detectorWhere filters findings of one detector by every variable. The
// detector variable still applies, so choosing one detector empties the
// other rows instead of silently ignoring the choice.
func detectorWhere(detector string) string {
	return where("time", "cluster", "namespace", "user", "detector", "severity") + "\n  AND detector = '" + detector + "'"
}

// evidenceValue extracts the value of the first evidence item whose field
// matches fieldRE. Evidence is a JSON array string of {field, value,
// source}; ClickHouse 18.16 has no JSONExtract, so a regular expression
// reads it (values stop at the first quote, which JSON escapes inside a
// value).
func evidenceValue(fieldRE string) string {
	return `extract(evidence, '"field":"` + fieldRE + `","value":"([^"]*)"')`
}

// detectors has one row per detector with what an investigator of that
// detector's findings asks first.
func detectorsBoard(c *catalog) (dashboard.Dashboard, error) {
	bd := c.newBoard(detectorsUID, "auditpipe: detectors",
		"One row per built-in detector: the facts an investigator needs for its findings.", "security")
	bd.standardVariables()

	bd.row("Anonymous access (anonymous-access)")
	bd.chTable("Anonymous paths", "Paths reached without credentials: how often, whether any was allowed, from how many sources.", 12, 8,
		`SELECT request_uri AS path,
  count() AS findings,
  countIf(response_code < 400) AS allowed,
  uniqExact(source_ip) AS sources,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("anonymous-access")+`
GROUP BY path
ORDER BY allowed DESC, findings DESC
LIMIT 100`, "path", "findings", "allowed", "sources", "last_seen")
	bd.chTable("Anonymous sources", "Addresses sending unauthenticated requests, the paths they tried and the worst outcome.", 12, 8,
		`SELECT source_ip,
  count() AS findings,
  uniqExact(request_uri) AS paths,
  countIf(response_code < 400) AS allowed,
  arrayElement(['info', 'low', 'medium', 'high', 'critical'], max(severity_level) + 1) AS worst,
  min(time) AS first_seen,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("anonymous-access")+`
GROUP BY source_ip
ORDER BY findings DESC
LIMIT 100`, "source_ip", "findings", "paths", "allowed", "worst", "first_seen", "last_seen")

	bd.row("Stale bound tokens (stale-token)")
	bd.chTable("Stale tokens by service account", "Service accounts presenting projected tokens past their refresh deadline; seconds past the threshold come from the apiserver's stale-token annotation.", 24, 8,
		`SELECT username AS service_account,
  count() AS findings,
  max(toUInt64OrZero(extract(evidence, 'seconds after warning threshold: ([0-9]+)'))) AS max_seconds_past,
  arrayStringConcat(arraySort(groupUniqArray(`+evidenceValue(`user\\.extra\\[authentication\\.kubernetes\\.io/pod-name\\]`)+`)), ', ') AS pods,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("stale-token")+`
GROUP BY service_account
ORDER BY max_seconds_past DESC
LIMIT 100`, "service_account", "findings", "max_seconds_past", "pods", "last_seen")

	bd.row("Legacy tokens (legacy-token)")
	bd.chTable("Legacy token use", "Long-lived Secret-based tokens still in use, or presented after being invalidated.", 24, 7,
		`SELECT if(username = '', '(rejected)', username) AS principal,
  count() AS findings,
  arrayElement(['info', 'low', 'medium', 'high', 'critical'], max(severity_level) + 1) AS worst,
  arrayStringConcat(arraySort(groupUniqArray(source_ip)), ', ') AS source_ips,
  any(summary) AS example,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("legacy-token")+`
GROUP BY principal
ORDER BY findings DESC
LIMIT 100`, "principal", "findings", "worst", "source_ips", "example", "last_seen")

	bd.row("Token replay (token-replay)")
	// The joined subqueries carry aliases, which current releases require
	// (ALIAS_REQUIRED, Code 206) and 18.16 accepts.
	bd.chTable("Replayed credentials", "Bound credentials seen from several addresses or clients; IPs, user agents and the bound pod and node come from every event that presented the credential.", 24, 9,
		`SELECT credential_id, principal, findings, ips, user_agents, pod, node, last_seen
FROM (
  SELECT credential_id,
    any(username) AS principal,
    count() AS findings,
    max(time) AS last_seen
  FROM findings FINAL
  WHERE `+detectorWhere("token-replay")+`
    AND credential_id != ''
  GROUP BY credential_id
) AS f ANY LEFT JOIN (
  SELECT credential_id,
    arrayStringConcat(arraySort(groupUniqArray(source_ip)), ', ') AS ips,
    arrayStringConcat(arraySort(groupUniqArray(user_agent)), ' | ') AS user_agents,
    anyIf(pod_name, pod_name != '') AS pod,
    anyIf(node_name, node_name != '') AS node
  FROM events
  WHERE `+where("time", "cluster")+`
    AND credential_id IN (
      SELECT credential_id FROM findings
      WHERE $__timeFilter(time) AND detector = 'token-replay' AND credential_id != '')
  GROUP BY credential_id
) AS e USING credential_id
ORDER BY last_seen DESC
LIMIT 100`, "credential_id", "principal", "findings", "ips", "user_agents", "pod", "node", "last_seen")

	bd.row("Unsigned JWTs (unsigned-jwt)")
	bd.chTable("Unsigned or unverifiable JWTs", "Tokens with alg none, no kid or no signature, with the header values as the request carried them.", 24, 8,
		`SELECT time, cluster, username AS sender, source_ip,
  `+evidenceValue(`[^"]*header\\.alg`)+` AS alg,
  `+evidenceValue(`[^"]*header\\.kid`)+` AS kid,
  resource, summary, audit_id
FROM findings FINAL
WHERE `+detectorWhere("unsigned-jwt")+`
ORDER BY time DESC
LIMIT 200`, "time", "cluster", "sender", "source_ip", "alg", "kid", "resource", "summary", "audit_id")

	bd.row("Broad selectors (broad-selector)")
	bd.chTable("Broad reads by identity and resource", "Who listed or watched what across namespaces without a selector.", 24, 8,
		`SELECT username, resource,
  count() AS findings,
  arrayStringConcat(arraySort(groupUniqArray(verb)), ', ') AS verbs,
  uniqExact(namespace) AS namespaces,
  any(request_uri) AS example_uri,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("broad-selector")+`
GROUP BY username, resource
ORDER BY findings DESC
LIMIT 100`, "username", "resource", "findings", "verbs", "namespaces", "example_uri", "last_seen")

	bd.row("Unconfined AppArmor and seccomp (apparmor-unconfined)")
	bd.chTable("Unconfined workloads by namespace", "Workloads created or changed to run without an AppArmor or seccomp profile.", 24, 8,
		`SELECT namespace,
  extract(summary, '([A-Z][A-Za-z]+ [a-z0-9.-]+/[a-z0-9.-]+( \\([^)]*\\))?)') AS workload,
  if(positionCaseInsensitive(summary, 'seccomp') > 0, 'seccomp', 'apparmor') AS profile,
  count() AS findings,
  arrayElement(['info', 'low', 'medium', 'high', 'critical'], max(severity_level) + 1) AS worst,
  arrayStringConcat(arraySort(groupUniqArray(username)), ', ') AS changed_by,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("apparmor-unconfined")+`
GROUP BY namespace, workload, profile
ORDER BY findings DESC
LIMIT 100`, "namespace", "workload", "profile", "findings", "worst", "changed_by", "last_seen")

	bd.row("Unsecured image pulls (unsecured-image-pull)")
	bd.chTable("Private images without pull secrets", "Pods that can start from a cached copy of a private image they have no credentials for.", 24, 7,
		`SELECT namespace,
  `+evidenceValue(`spec\\.[A-Za-z]*[cC]ontainers\\[[0-9]+\\]\\.image`)+` AS image,
  count() AS findings,
  arrayElement(['info', 'low', 'medium', 'high', 'critical'], max(severity_level) + 1) AS worst,
  arrayStringConcat(arraySort(groupUniqArray(username)), ', ') AS created_by,
  max(time) AS last_seen
FROM findings FINAL
WHERE `+detectorWhere("unsecured-image-pull")+`
GROUP BY namespace, image
ORDER BY findings DESC
LIMIT 100`, "namespace", "image", "findings", "worst", "created_by", "last_seen")

	bd.row("Admission policy changes (admission-policy-change)")
	bd.chTimeseries("Admission changes by principal", "Changes to admission webhooks, policies and Pod Security labels per interval, by who made them.", 24, 7,
		`SELECT `+bucket("time")+`,
  username,
  count() AS changes
FROM findings FINAL
WHERE `+detectorWhere("admission-policy-change")+`
GROUP BY time, username
ORDER BY time, username`, "time", "username", "changes")
	bd.chTable("Admission change timeline", "Every change, oldest first: who, what verb on which object, and why it matters.", 24, 9,
		`SELECT time, cluster, username, verb, resource, namespace, name, severity, summary, audit_id
FROM findings FINAL
WHERE `+detectorWhere("admission-policy-change")+`
ORDER BY time
LIMIT 500`, "time", "cluster", "username", "verb", "resource", "namespace", "name", "severity", "summary", "audit_id")

	bd.row("First-seen terms (new_terms rules)")
	bd.chTable("New terms", "First-seen rules: a principal (the key) did something it never did within the rule's history (the term: a network, client, namespace, verb and resource). When the key was first seen and how many distinct terms it has tell a new principal from a habit broken.", 24, 9,
		`SELECT time, cluster, detector,
  `+evidenceValue(`new_terms\\.key`)+` AS key,
  `+evidenceValue(`new_terms\\.term`)+` AS term,
  `+evidenceValue(`new_terms\\.key_first_seen`)+` AS key_first_seen,
  toUInt32OrZero(`+evidenceValue(`new_terms\\.distinct_terms`)+`) AS distinct_terms,
  severity, source_ip, audit_id
FROM findings FINAL
WHERE `+where("time", "cluster", "namespace", "user", "detector", "severity")+`
  AND startsWith(detector, 'rule:') AND position(evidence, '"field":"new_terms.term"') > 0
ORDER BY time DESC
LIMIT 500`, "time", "cluster", "detector", "key", "term", "key_first_seen", "distinct_terms", "severity", "source_ip", "audit_id")

	return bd.build()
}
