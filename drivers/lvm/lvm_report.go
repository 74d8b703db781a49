package lvm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// LVM's JSON report (`--reportformat json`, lvm2 >= 2.02.158) is read instead
// of columns, as TopoLVM does: names, tags and empty fields cannot shift a
// column. Every value is a string; with --nosuffix sizes are plain numbers in
// the unit asked for (--units b: bytes, --units g: GiB with two decimals).
//
//	{"report": [{"vg": [{"vg_name":"cinder-volumes", "vg_size":"2.00", ...}]}]}
//	{"report": [{"lv": [{"lv_name":"volume-…", "lv_size":"1.00", ...}]}]}
type report struct {
	Report []struct {
		VG []vgRow `json:"vg"`
		LV []lvRow `json:"lv"`
		PV []pvRow `json:"pv"`
	} `json:"report"`
}

type vgRow struct {
	Name    string `json:"vg_name"`
	Size    string `json:"vg_size"`
	Free    string `json:"vg_free"`
	LVCount string `json:"lv_count"`
	UUID    string `json:"vg_uuid"`
}

type lvRow struct {
	VG          string `json:"vg_name"`
	Name        string `json:"lv_name"`
	Size        string `json:"lv_size"`
	Attr        string `json:"lv_attr"`
	Origin      string `json:"origin"`
	Pool        string `json:"pool_lv"`
	DataPercent string `json:"data_percent"`
	Tags        string `json:"lv_tags"`
}

type pvRow struct {
	VG   string `json:"vg_name"`
	Name string `json:"pv_name"`
	Size string `json:"pv_size"`
	Free string `json:"pv_free"`
}

// The field lists asked of LVM; they name exactly the json tags above.
const (
	vgFields = "vg_name,vg_size,vg_free,lv_count,vg_uuid"
	lvFields = "vg_name,lv_name,lv_size,lv_attr,origin,pool_lv,data_percent,lv_tags"
	pvFields = "vg_name,pv_name,pv_size,pv_free"
)

func parseReport(out []byte) (report, error) {
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return report{}, fmt.Errorf("reading LVM JSON report: %w", err)
	}
	return r, nil
}

func (r report) vgs() []vgRow {
	var rows []vgRow
	for _, part := range r.Report {
		rows = append(rows, part.VG...)
	}
	return rows
}

func (r report) lvs() []lvRow {
	var rows []lvRow
	for _, part := range r.Report {
		rows = append(rows, part.LV...)
	}
	return rows
}

func (r report) pvs() []pvRow {
	var rows []pvRow
	for _, part := range r.Report {
		rows = append(rows, part.PV...)
	}
	return rows
}

// number reads a report value; LVM prints "" for a field that does not apply
// (data_percent of a plain LV), which reads as 0.
func number(field, s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("LVM report field %s: %q is not a number", field, s)
	}
	return f, nil
}

// bytes reads a size reported with --units b --nosuffix.
func bytesOf(field, s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("LVM report field %s: %q is not a byte count", field, s)
	}
	return n, nil
}

// hasTag reports whether a comma-separated lv_tags value holds tag.
func hasTag(tags, tag string) bool {
	for _, t := range strings.Split(tags, ",") {
		if t == tag {
			return true
		}
	}
	return false
}
