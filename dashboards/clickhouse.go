package main

import (
	"errors"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// The foundation SDK has no query type for grafana-clickhouse-datasource,
// so CHQuery implements the plugin's SQL-editor query model (CHSqlQuery in
// the plugin's src/types/sql.ts, read by sqlds/sqlutil on the backend).
const (
	// clickhouseType is the plugin id, used in every datasource ref.
	clickhouseType = "grafana-clickhouse-datasource"
	// clickhouseUID is the uid deploy/compose provisions the datasource
	// under; dashboards refer to it so that no datasource picker is needed.
	clickhouseUID = "auditpipe-clickhouse"
	// clickhousePluginVersion is recorded in each query, as the plugin's
	// editor does, so the plugin's migrations know which model they read.
	clickhousePluginVersion = "4.13.0"
	// prometheusUID is the provisioned Prometheus datasource.
	prometheusUID = "auditpipe-prometheus"
)

// CHFormat is sqlutil.FormatQueryOption: how the backend shapes the frame.
type CHFormat int

// Formats the plugin's backend understands (sqlutil.FormatQueryOption).
const (
	// CHFormatTimeSeries turns long rows (time, labels…, value) into one
	// series per label set.
	CHFormatTimeSeries CHFormat = 0
	// CHFormatTable returns rows as they are.
	CHFormatTable CHFormat = 1
)

// CHQuery is one grafana-clickhouse-datasource query in SQL-editor mode.
type CHQuery struct {
	RefID         string               `json:"refId"`
	Datasource    common.DataSourceRef `json:"datasource"`
	EditorType    string               `json:"editorType"`
	QueryType     string               `json:"queryType"`
	Format        CHFormat             `json:"format"`
	RawSQL        string               `json:"rawSql"`
	PluginVersion string               `json:"pluginVersion"`
}

var _ variants.Dataquery = CHQuery{}

// ImplementsDataqueryVariant marks CHQuery as a panel target.
func (CHQuery) ImplementsDataqueryVariant() {}

// DataqueryType names the plugin the query is for.
func (CHQuery) DataqueryType() string { return clickhouseType }

// Equals reports whether other is the same ClickHouse query.
func (q CHQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(CHQuery)
	return ok && q.RefID == o.RefID && q.EditorType == o.EditorType && q.QueryType == o.QueryType &&
		q.Format == o.Format && q.RawSQL == o.RawSQL && q.PluginVersion == o.PluginVersion &&
		ptrEq(q.Datasource.Type, o.Datasource.Type) && ptrEq(q.Datasource.Uid, o.Datasource.Uid)
}

// Validate rejects a query the plugin could not run.
func (q CHQuery) Validate() error {
	if q.RawSQL == "" {
		return errors.New("clickhouse query " + q.RefID + ": rawSql is empty")
	}
	return nil
}

func ptrEq(a, b *string) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// chQueryBuilder adapts a CHQuery to the SDK's panel builders.
type chQueryBuilder struct{ q CHQuery }

var _ cog.Builder[variants.Dataquery] = chQueryBuilder{}

// Build returns the query after validating it.
func (b chQueryBuilder) Build() (variants.Dataquery, error) {
	if err := b.q.Validate(); err != nil {
		return nil, err
	}
	return b.q, nil
}

// newCHQuery returns a builder for a query of the given shape.
func newCHQuery(refID, sql string, format CHFormat) chQueryBuilder {
	qt := "table"
	if format == CHFormatTimeSeries {
		qt = "timeSeries" // the plugin's QueryType.TimeSeries
	}
	return chQueryBuilder{CHQuery{
		RefID:         refID,
		Datasource:    clickhouseRef(),
		EditorType:    "sql",
		QueryType:     qt,
		Format:        format,
		RawSQL:        sql,
		PluginVersion: clickhousePluginVersion,
	}}
}

func clickhouseRef() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(clickhouseType), Uid: cog.ToPtr(clickhouseUID)}
}

func prometheusRef() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(prometheusUID)}
}
