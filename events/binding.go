package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Kafka protocol binding of CloudEvents 1.0: in binary content mode every
// attribute is a "ce_" header and the record value is the data; in
// structured mode the value is the whole event as JSON.
const (
	headerPrefix     = "ce_"
	headerCT         = "content-type"
	contentJSON      = "application/json"
	contentStructure = "application/cloudevents+json"

	// MaxDataBytes bounds an input's data: requests are small, and a huge
	// one is hostile or broken.
	MaxDataBytes = 64 << 10
	// MaxAttributeBytes bounds one CloudEvents attribute (a ce_ header or a
	// structured event's attribute). Every attribute Ember reads is an id,
	// a URI or a type name; results repeat some of them, so an unbounded
	// attribute would make a result larger than its request.
	MaxAttributeBytes = 1 << 10
	// MaxHeaderBytes bounds all headers of a record together (names and
	// values): a dead letter carries them, and must always fit.
	MaxHeaderBytes = 16 << 10
	// MaxStructuredBytes bounds a structured-mode record's value: the data
	// and the attributes.
	MaxStructuredBytes = MaxDataBytes + MaxHeaderBytes
	// MaxTraceStateBytes and MaxTraceStateMembers are W3C Trace Context's
	// bounds of tracestate: at most 32 list members, and 512 characters is
	// what a vendor must propagate. A longer tracestate is cut at a member
	// boundary, as the spec allows, not refused: tracing is not the
	// request.
	MaxTraceStateBytes   = 512
	MaxTraceStateMembers = 32
)

// Extension attribute names (CloudEvents extensions are lowercase alphanumerics).
const (
	ExtPartitionKey  = "partitionkey"
	ExtCausationID   = "causationid"
	ExtCorrelationID = "correlationid"
	ExtTraceParent   = "traceparent"
	ExtTraceState    = "tracestate"
)

// EnvelopeError means the record cannot be read as an Ember CloudEvent: it
// goes to the dead-letter topic, since no result can name its cause.
type EnvelopeError struct{ Reason string }

func (e *EnvelopeError) Error() string { return "not a valid CloudEvent: " + e.Reason }

func envelope(format string, args ...any) error {
	return &EnvelopeError{Reason: fmt.Sprintf(format, args...)}
}

// Request is a decoded input event.
type Request struct {
	Event ce.Event
	// Payload is the typed data; nil when the data could not be decoded.
	Payload Payload
}

func (r *Request) ID() string     { return r.Event.ID() }
func (r *Request) Source() string { return r.Event.Source() }
func (r *Request) Type() string   { return r.Event.Type() }

// VolumeID is the volume the request touches: from the payload, or from the
// envelope when the payload is unreadable (for the .error result's key).
func (r *Request) VolumeID() string {
	if r.Payload != nil && r.Payload.Volume() != "" {
		return r.Payload.Volume()
	}
	if pk, ok := r.Event.Extensions()[ExtPartitionKey].(string); ok {
		return pk
	}
	return r.Event.Subject()
}

// ResourceID is the request's subject resource.
func (r *Request) ResourceID() string {
	if r.Payload != nil && r.Payload.Resource() != "" {
		return r.Payload.Resource()
	}
	return r.Event.Subject()
}

// Decode reads one Kafka record (its headers and value) that arrived on the
// topic of input type want. An *EnvelopeError means dead-letter it; a
// *ValidationError comes with the Request so that an .error result can be
// built; a nil error means the request is valid.
func Decode(headers map[string]string, value []byte, want string) (*Request, error) {
	if err := checkSizes(headers, value); err != nil {
		return nil, err
	}
	e, err := readEnvelope(headers, value)
	if err != nil {
		return nil, err
	}
	if e.Type() != want {
		return nil, envelope("type %q on the topic of %q", clip(e.Type()), want)
	}
	req := &Request{Event: e}
	p := newPayload(want)
	if p == nil {
		return nil, envelope("unknown input type %q", clip(want))
	}
	data := e.Data()
	if len(data) > MaxDataBytes {
		return req, invalid("data", "is %d bytes, at most %d", len(data), MaxDataBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(p); err != nil {
		return req, invalid("data", "is not a %s payload: %v", want, err)
	}
	if dec.More() {
		return req, invalid("data", "has trailing content after the JSON object")
	}
	req.Payload = p
	if err := p.Validate(); err != nil {
		return req, err
	}
	if e.Subject() != p.Resource() {
		return req, invalid("subject", "%q does not match the data's resource id %q", clip(e.Subject()), p.Resource())
	}
	if pk, ok := e.Extensions()[ExtPartitionKey].(string); ok && pk != p.Volume() {
		return req, invalid("partitionkey", "%q does not match the volume id %q", clip(pk), p.Volume())
	}
	return req, nil
}

// readEnvelope builds the event from a binary or structured record and
// checks the attributes SPEC §2 requires.
func readEnvelope(headers map[string]string, value []byte) (ce.Event, error) {
	ct := headers[headerCT]
	mt, _, _ := mime.ParseMediaType(ct)
	var e ce.Event
	if mt == contentStructure {
		if err := json.Unmarshal(value, &e); err != nil {
			return e, envelope("structured event: %v", err)
		}
		// sdk-go upgrades 0.3 events; Ember reads 1.0 only.
		var probe struct {
			SpecVersion string `json:"specversion"`
		}
		_ = json.Unmarshal(value, &probe)
		if probe.SpecVersion != ce.CloudEventsVersionV1 {
			return e, envelope("specversion %q, want 1.0", clip(probe.SpecVersion))
		}
	} else {
		if sv := headers[headerPrefix+"specversion"]; sv != ce.CloudEventsVersionV1 {
			if sv == "" {
				return e, envelope("no ce_specversion header (binary mode) and content-type %q is not %s", clip(ct), contentStructure)
			}
			return e, envelope("specversion %q, want 1.0", clip(sv))
		}
		e = ce.New(ce.CloudEventsVersionV1)
		for k, v := range headers {
			if !strings.HasPrefix(k, headerPrefix) {
				continue
			}
			name := strings.TrimPrefix(k, headerPrefix)
			switch name {
			case "specversion":
			case "id":
				e.SetID(v)
			case "source":
				e.SetSource(v)
			case "type":
				e.SetType(v)
			case "subject":
				e.SetSubject(v)
			case "time":
				t, err := types.ParseTime(v)
				if err != nil {
					return e, envelope("ce_time %q: %v", clip(v), err)
				}
				e.SetTime(t)
			case "dataschema":
				e.SetDataSchema(v)
			default:
				if !validExtName(name) {
					return e, envelope("header %q is not a CloudEvents attribute name", clip(k))
				}
				e.SetExtension(name, v)
			}
		}
		if ct != "" {
			e.SetDataContentType(ct)
		}
		e.DataEncoded = value
	}
	if err := e.Validate(); err != nil {
		return e, envelope("%v", err)
	}
	if e.Subject() == "" {
		return e, envelope("subject is required")
	}
	if err := checkAttributes(e); err != nil {
		return e, err
	}
	boundTraceState(&e)
	if mt, _, _ := mime.ParseMediaType(e.DataContentType()); mt != contentJSON {
		return e, envelope("datacontenttype %q, want %s", clip(e.DataContentType()), contentJSON)
	}
	return e, nil
}

// checkSizes refuses, before anything is parsed, a record whose headers or
// structured value are larger than any request Ember serves.
func checkSizes(headers map[string]string, value []byte) error {
	n := 0
	for k, v := range headers {
		n += len(k) + len(v)
	}
	if n > MaxHeaderBytes {
		return envelope("headers are %d bytes, at most %d", n, MaxHeaderBytes)
	}
	if mt, _, _ := mime.ParseMediaType(headers[headerCT]); mt == contentStructure && len(value) > MaxStructuredBytes {
		return envelope("structured event is %d bytes, at most %d", len(value), MaxStructuredBytes)
	}
	return nil
}

// checkAttributes bounds every attribute but data (and tracestate, which
// boundTraceState cuts).
func checkAttributes(e ce.Event) error {
	attrs := map[string]string{"id": e.ID(), "source": e.Source(), "type": e.Type(), "subject": e.Subject(),
		"dataschema": e.DataSchema(), "datacontenttype": e.DataContentType()}
	for name, v := range e.Extensions() {
		if name == ExtTraceState {
			continue
		}
		s, err := types.Format(v)
		if err != nil {
			return envelope("extension %q: %v", clip(name), err)
		}
		attrs[name] = s
	}
	for name, v := range attrs {
		if len(v) > MaxAttributeBytes {
			return envelope("attribute %q is %d bytes, at most %d", clip(name), len(v), MaxAttributeBytes)
		}
	}
	return nil
}

// boundTraceState keeps the first list members of tracestate that fit W3C's
// bounds and drops the rest (W3C Trace Context: a vendor may drop members
// from the end when the header is too long). Empty members go; nothing left
// removes the attribute.
func boundTraceState(e *ce.Event) {
	v, ok := e.Extensions()[ExtTraceState]
	if !ok {
		return
	}
	s, _ := types.Format(v)
	var kept []string
	n := 0
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		if len(kept) == MaxTraceStateMembers || n+len(m)+len(kept) > MaxTraceStateBytes {
			break
		}
		kept = append(kept, m)
		n += len(m)
	}
	if len(kept) == 0 {
		e.SetExtension(ExtTraceState, nil)
		return
	}
	e.SetExtension(ExtTraceState, strings.Join(kept, ","))
}

func validExtName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Fingerprint digests what a request asks for: its type, subject and
// payload (re-encoded from the decoded struct, so spacing and key order of
// the original JSON do not matter). Two deliveries of one request have the
// same fingerprint; a (source, id) reused for another request does not.
func (r *Request) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(r.Type() + "\x00" + r.Event.Subject() + "\x00"))
	if r.Payload != nil {
		b, _ := json.Marshal(r.Payload)
		h.Write(b)
	} else {
		h.Write(r.Event.Data())
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
