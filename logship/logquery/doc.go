// Package logquery filters JSON-lines log records, such as Caddy's access
// logs, for `caddy lb-logs search`. It never decodes a whole line:
// Lookup scans the raw bytes for one member, ParseWhere turns a --where
// expression into a Cond that matches lines, and Timestamp reads a
// line's "ts". In the common case nothing is allocated per line, so a
// search over gigabytes of shipped logs is bound by gunzip, not by JSON.
package logquery
