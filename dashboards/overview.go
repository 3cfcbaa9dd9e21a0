package main

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// overviewUID is the security overview's uid.
const overviewUID = "auditpipe-overview"

// overview answers: what is being found, how bad, by whom, from where, in
// which cluster, and which ATT&CK techniques it maps to.
func overviewBoard(c *catalog) (dashboard.Dashboard, error) {
	bd := c.newBoard(overviewUID, "auditpipe: security overview",
		"Findings of every detector across clusters: trends, critical findings, principals, sources and ATT&CK techniques.",
		"security")
	bd.standardVariables()

	bd.chStat("Findings", "Distinct findings in range (rollup findings_by_minute).", 6, 4, `SELECT uniqExactMerge(findings) AS findings
FROM findings_by_minute
WHERE `+where("minute", "cluster", "detector", "severity"), "findings")
	bd.chStat("Critical findings", "Distinct critical findings in range.", 6, 4, `SELECT uniqExactMerge(findings) AS findings
FROM findings_by_minute
WHERE `+where("minute", "cluster", "detector", "severity")+`
  AND severity = 'critical'`, "findings")
	bd.chStat("Principals with findings", "Distinct users and service accounts named by a finding.", 6, 4, `SELECT uniqExact(username) AS principals
FROM findings FINAL
WHERE `+where("time", "cluster", "namespace", "user", "detector", "severity"), "principals")
	bd.chStat("Denied requests", "Requests answered 401 or 403 (rollup events_by_minute).", 6, 4, `SELECT uniqExactMerge(events) AS denied
FROM events_by_minute
WHERE `+where("minute", "cluster")+`
  AND response_code IN (401, 403)`, "denied")

	bd.chTimeseries("Findings over time by detector and severity",
		"Distinct findings per interval from the findings_by_minute rollup; honours cluster, detector and severity.", 24, 9,
		`SELECT `+bucket("minute")+`,
  concat(detector, ' / ', severity) AS series,
  uniqExactMerge(findings) AS findings
FROM findings_by_minute
WHERE `+where("minute", "cluster", "detector", "severity")+`
GROUP BY time, series
ORDER BY time, series`, "time", "series", "findings")

	bd.chTable("Critical findings", "The newest critical findings; audit_id opens the request in the audit explorer.", 24, 9,
		`SELECT time, cluster, detector, username, source_ip, namespace, summary, mitre_technique, audit_id
FROM findings FINAL
WHERE `+where("time", "cluster", "namespace", "user", "detector", "severity")+`
  AND severity = 'critical'
ORDER BY time DESC
LIMIT 200`, "time", "cluster", "detector", "username", "source_ip", "namespace", "summary", "mitre_technique", "audit_id")

	bd.chTable("Top principals", "Users and service accounts by number of findings, with their worst severity and the detectors that fired.", 12, 9,
		`SELECT username,
  count() AS findings,
  countIf(severity = 'critical') AS critical,
  arrayElement(['info', 'low', 'medium', 'high', 'critical'], max(severity_level) + 1) AS worst,
  arrayStringConcat(arraySort(groupUniqArray(detector)), ', ') AS detectors
FROM findings FINAL
WHERE `+where("time", "cluster", "namespace", "user", "detector", "severity")+`
GROUP BY username
ORDER BY findings DESC
LIMIT 20`, "username", "findings", "critical", "worst", "detectors")

	bd.chTable("Top source IPs", "Source addresses by number of findings, with how many principals used them.", 12, 9,
		`SELECT source_ip,
  count() AS findings,
  uniqExact(username) AS principals,
  arrayElement(['info', 'low', 'medium', 'high', 'critical'], max(severity_level) + 1) AS worst,
  arrayStringConcat(arraySort(groupUniqArray(detector)), ', ') AS detectors
FROM findings FINAL
WHERE `+where("time", "cluster", "namespace", "user", "detector", "severity")+`
  AND source_ip != ''
GROUP BY source_ip
ORDER BY findings DESC
LIMIT 20`, "source_ip", "findings", "principals", "worst", "detectors")

	// Both joined subqueries carry an alias: 18.16 accepts them bare, but
	// current releases refuse that with ALIAS_REQUIRED (Code 206).
	bd.chTable("Clusters compared", "Findings per cluster (total and by severity), next to the cluster's event volume (rollups only).", 12, 8,
		`SELECT cluster, total, critical, high, medium, events
FROM (
  SELECT cluster,
    uniqExactMerge(findings) AS total,
    uniqExactMergeIf(findings, severity = 'critical') AS critical,
    uniqExactMergeIf(findings, severity = 'high') AS high,
    uniqExactMergeIf(findings, severity = 'medium') AS medium
  FROM findings_by_minute
  WHERE `+where("minute", "cluster", "detector", "severity")+`
  GROUP BY cluster
) AS f ANY LEFT JOIN (
  SELECT cluster, uniqExactMerge(events) AS events
  FROM events_by_minute
  WHERE `+where("minute", "cluster")+`
  GROUP BY cluster
) AS e USING cluster
ORDER BY total DESC`, "cluster", "total", "critical", "high", "medium", "events")

	bd.chTable("Findings by MITRE ATT&CK technique", "Which techniques the findings map to, and which detectors saw them.", 12, 8,
		`SELECT mitre_technique AS technique,
  count() AS findings,
  uniqExact(username) AS principals,
  arrayStringConcat(arraySort(groupUniqArray(detector)), ', ') AS detectors
FROM findings FINAL
WHERE `+where("time", "cluster", "namespace", "user", "detector", "severity")+`
  AND mitre_technique != ''
GROUP BY technique
ORDER BY findings DESC`, "technique", "findings", "principals", "detectors")

	return bd.build()
}
