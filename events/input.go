package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// ParsePayload decodes and validates the data of an input type.
func ParsePayload(typ string, data []byte) (Payload, error) {
	p := newPayload(typ)
	if p == nil {
		return nil, fmt.Errorf("unknown input type %q (known: %v)", typ, InputTypes())
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(p); err != nil {
		return nil, invalid("data", "is not a %s payload: %v", typ, err)
	}
	return p, p.Validate()
}

// NewInput builds the binary-mode record of an input event, as `ember emit`
// and upstream producers publish it: subject and partition key from the
// data, the record key = the volume id.
func NewInput(typ, source, id string, data []byte, at time.Time) (Record, error) {
	p, err := ParsePayload(typ, data)
	if err != nil {
		return Record{}, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return Record{}, err
	}
	h := map[string]string{
		headerCT:                       contentJSON,
		headerPrefix + "specversion":   "1.0",
		headerPrefix + "id":            id,
		headerPrefix + "source":        source,
		headerPrefix + "type":          typ,
		headerPrefix + "subject":       p.Resource(),
		headerPrefix + ExtPartitionKey: p.Volume(),
	}
	if !at.IsZero() {
		h[headerPrefix+"time"] = at.UTC().Format(time.RFC3339Nano)
	}
	return Record{ID: id, Type: typ, Key: p.Volume(), Headers: h, Value: compact.Bytes()}, nil
}
