package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"
)

// ResultData is the data of every result event. Field names are Cinder's
// notification payload names, so billing pipelines written for Cinder
// (Ceilometer's volume.size and snapshot.size meters) read them unchanged.
type ResultData struct {
	TenantID         string            `json:"tenant_id,omitempty"`
	UserID           string            `json:"user_id,omitempty"`
	VolumeID         string            `json:"volume_id,omitempty"`
	SnapshotID       string            `json:"snapshot_id,omitempty"`
	BackupID         string            `json:"backup_id,omitempty"`
	AttachmentID     string            `json:"attachment_id,omitempty"`
	ImageID          string            `json:"image_id,omitempty"`
	DiskFormat       string            `json:"disk_format,omitempty"`
	ParentID         string            `json:"parent_id,omitempty"`
	Incremental      bool              `json:"is_incremental,omitempty"`
	ObjectCount      int               `json:"object_count,omitempty"`
	Size             int               `json:"size,omitempty"`
	VolumeSize       int               `json:"volume_size,omitempty"`
	Status           string            `json:"status,omitempty"`
	Host             string            `json:"host,omitempty"`
	Backend          string            `json:"backend,omitempty"`
	VolumeType       string            `json:"volume_type,omitempty"`
	DisplayName      string            `json:"display_name,omitempty"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	CreatedAt        string            `json:"created_at,omitempty"`
	LaunchedAt       string            `json:"launched_at,omitempty"`
	DeletedAt        string            `json:"deleted_at,omitempty"`
	ProviderLocation string            `json:"provider_location,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	DurationMS       int64             `json:"duration_ms,omitempty"`
	Percent          *int              `json:"percent,omitempty"`
	ConnectionInfo   any               `json:"connection_info,omitempty"`
	Error            *ErrorInfo        `json:"error,omitempty"`
	// Audit (volume.exists) and stats fields.
	AuditPeriodBeginning string `json:"audit_period_beginning,omitempty"`
	AuditPeriodEnding    string `json:"audit_period_ending,omitempty"`
	Stats                any    `json:"stats,omitempty"`
}

// ErrorInfo is the error of an .error result.
type ErrorInfo struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// TimeFormat is how result timestamps are written (Cinder's notifications
// use ISO 8601 UTC).
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// FormatTime formats t as TimeFormat in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// Mode is the content mode of output records.
type Mode string

const (
	Binary     Mode = "binary"
	Structured Mode = "structured"
)

// Record is one result as Kafka will carry it. Records are built once,
// stored with the request's completion, and published from storage, so
// every publication of a result is byte-identical.
type Record struct {
	ID      string            `json:"id"`
	Type    string            `json:"type"` // the topic, before the prefix
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers"`
	Value   []byte            `json:"value"`
}

var resultNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ember-storage/ember/result"))

// ResultID derives a result's id from its request's (source, id), the result
// type and, for repeated results such as progress, a discriminator: a result
// re-published after a crash is the same event.
func ResultID(source, id, resultType, discriminator string) string {
	return uuid.NewSHA1(resultNS, []byte(source+"\n"+id+"\n"+resultType+"\n"+discriminator)).String()
}

// Result describes a result event to build from a request.
type Result struct {
	Type string
	// Source is /ember/<backend> or /ember/<instance> before a backend is chosen.
	Source string
	// Discriminator tells repeated results of one type apart (progress percent).
	Discriminator string
	// Time is the result's time attribute; zero leaves it out (start results
	// must be reproducible, so they carry the request's time or none).
	Time time.Time
	Data ResultData
}

// Bounds of a result. Every field of a result comes from a validated
// request, from the registry or from Ember itself, except an error's
// message, which may quote a storage host: it is cut to
// MaxErrorMessageBytes. MaxResultBytes is far below what Kafka's producer
// sends (1,000,000 bytes), so a result can always be published.
const (
	MaxErrorMessageBytes = 1 << 10
	MaxResultBytes       = 256 << 10
)

// ErrResultTooLarge means a result would exceed MaxResultBytes: a bug, since
// every input that feeds a result is bounded.
var ErrResultTooLarge = errors.New("result exceeds the result size bound")

// Build makes the record of r in answer to req.
func Build(req *Request, r Result, mode Mode) (Record, error) {
	if r.Data.Error != nil && len(r.Data.Error.Message) > MaxErrorMessageBytes {
		e := *r.Data.Error
		e.Message = Truncate(e.Message, MaxErrorMessageBytes)
		r.Data.Error = &e
	}
	e := ce.New(ce.CloudEventsVersionV1)
	id := ResultID(req.Source(), req.ID(), r.Type, r.Discriminator)
	e.SetID(id)
	e.SetType(r.Type)
	e.SetSource(r.Source)
	e.SetSubject(req.ResourceID())
	if !r.Time.IsZero() {
		e.SetTime(r.Time.UTC())
	}
	key := req.VolumeID()
	e.SetExtension(ExtPartitionKey, key)
	e.SetExtension(ExtCausationID, req.ID())
	corr, _ := req.Event.Extensions()[ExtCorrelationID].(string)
	if corr == "" {
		corr = req.ID()
	}
	e.SetExtension(ExtCorrelationID, corr)
	tp, ts := continueTrace(req, id)
	e.SetExtension(ExtTraceParent, tp)
	if ts != "" {
		e.SetExtension(ExtTraceState, ts)
	}
	if err := e.SetData(contentJSON, r.Data); err != nil {
		return Record{}, fmt.Errorf("result %s: %w", r.Type, err)
	}
	if err := e.Validate(); err != nil {
		return Record{}, fmt.Errorf("result %s: %w", r.Type, err)
	}
	rec, err := encode(e, key, mode)
	if err != nil {
		return Record{}, err
	}
	if n := rec.Size(); n > MaxResultBytes {
		return Record{}, fmt.Errorf("result %s of %d bytes: %w", r.Type, n, ErrResultTooLarge)
	}
	return rec, nil
}

// Size is the record's length on the wire, near enough: key, headers and
// value.
func (r Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for k, v := range r.Headers {
		n += len(k) + len(v)
	}
	return n
}

// Truncate cuts s to at most n bytes on a UTF-8 boundary, marking the cut
// with "…" (counted in n).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// encode writes e in the given content mode.
func encode(e ce.Event, key string, mode Mode) (Record, error) {
	rec := Record{ID: e.ID(), Type: e.Type(), Key: key, Headers: map[string]string{}}
	if mode == Structured {
		v, err := json.Marshal(e)
		if err != nil {
			return Record{}, err
		}
		rec.Headers[headerCT] = contentStructure
		rec.Value = v
		return rec, nil
	}
	rec.Headers[headerCT] = e.DataContentType()
	rec.Headers[headerPrefix+"specversion"] = e.SpecVersion()
	rec.Headers[headerPrefix+"id"] = e.ID()
	rec.Headers[headerPrefix+"source"] = e.Source()
	rec.Headers[headerPrefix+"type"] = e.Type()
	if s := e.Subject(); s != "" {
		rec.Headers[headerPrefix+"subject"] = s
	}
	if !e.Time().IsZero() {
		rec.Headers[headerPrefix+"time"] = types.FormatTime(e.Time())
	}
	for k, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			return Record{}, err
		}
		rec.Headers[headerPrefix+k] = s
	}
	rec.Value = e.Data()
	return rec, nil
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// continueTrace returns the W3C traceparent of a result: the request's trace
// with a span id derived from the result id (so a re-published result
// carries the same one). A request without a valid traceparent starts a
// trace whose id derives from its (source, id).
func continueTrace(req *Request, resultID string) (traceparent, tracestate string) {
	span := sha256.Sum256([]byte(resultID))
	spanID := hex.EncodeToString(span[:8])
	in, _ := req.Event.Extensions()[ExtTraceParent].(string)
	if m := traceparentRE.FindStringSubmatch(in); m != nil && m[1] != "00000000000000000000000000000000" {
		ts, _ := req.Event.Extensions()[ExtTraceState].(string)
		return "00-" + m[1] + "-" + spanID + "-" + m[3], ts
	}
	trace := sha256.Sum256([]byte(req.Source() + "\n" + req.ID()))
	return "00-" + hex.EncodeToString(trace[:16]) + "-" + spanID + "-00", ""
}

// ReadRecord decodes a record (as a consumer of Ember's results would) into
// a CloudEvent: binary or structured.
func ReadRecord(headers map[string]string, value []byte) (ce.Event, error) {
	return readEnvelope(headers, value)
}
