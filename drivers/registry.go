package drivers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// Backend is one configured backend: a driver by name, the host it runs its
// commands on, and its options (SPEC §6).
type Backend struct {
	Name    string         `yaml:"name" json:"name"`
	Driver  string         `yaml:"driver" json:"driver"`
	Host    string         `yaml:"host" json:"host"`
	Options map[string]any `yaml:"options" json:"options"`
	// MaxCommands bounds the commands the backend's host runs at once
	// (Bounded); zero is DefaultMaxCommands.
	MaxCommands int `yaml:"max_commands" json:"max_commands,omitempty"`
}

// Factory builds a driver for a backend, running its commands through ex.
type Factory func(b Backend, ex Executor) (Driver, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a driver available by name. It panics on a duplicate, as
// database/sql does: that is a programming error.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic("drivers: Register called twice for " + name)
	}
	factories[name] = f
}

// Open builds the driver that b names.
func Open(b Backend, ex Executor) (Driver, error) {
	mu.RLock()
	f, ok := factories[b.Driver]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("backend %q: unknown driver %q (known: %v)", b.Name, b.Driver, Names())
	}
	d, err := f(b, ex)
	if err != nil {
		return nil, fmt.Errorf("backend %q (%s): %w", b.Name, b.Driver, err)
	}
	return d, nil
}

// Names lists the registered drivers.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DecodeOptions fills into (a pointer to a driver's options struct, with json
// tags) from the backend's options, refusing unknown keys so that a typo in
// the configuration is an error, not a silent default.
func DecodeOptions(opts map[string]any, into any) error {
	raw, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("options: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	return nil
}
