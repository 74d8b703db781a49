package imagestore

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// maxURLLen bounds what we parse; no image URL is longer.
const maxURLLen = 8 << 10

// location is a URL reduced to what decides where a request goes: scheme,
// host:port (default port made explicit) and the decoded, clean path.
type location struct {
	scheme string
	host   string
	path   string
}

func (l location) String() string {
	if l.scheme == "file" {
		return "file://" + l.path
	}
	return l.scheme + "://" + l.host + l.path
}

// within reports whether l is at or under prefix p, on a path-segment
// boundary: /images does not cover /images-private.
func (l location) within(p location) bool {
	if l.scheme != p.scheme || l.host != p.host {
		return false
	}
	return l.path == p.path || strings.HasPrefix(l.path, strings.TrimSuffix(p.path, "/")+"/")
}

// parseLocation parses raw strictly. Anything a server or file system could
// read differently from us is refused rather than normalised: userinfo
// (http://allowed@evil/), dot segments, also percent-encoded (%2e%2e),
// encoded separators (%2f, %5c), backslashes and control characters.
// Errors never echo the query or userinfo, which may hold secrets.
func parseLocation(raw string) (location, *url.URL, error) {
	if len(raw) > maxURLLen {
		return location{}, nil, fmt.Errorf("url is longer than %d bytes", maxURLLen)
	}
	for _, c := range []byte(raw) {
		if c < 0x20 || c == 0x7f || c == '\\' || c == ' ' {
			return location{}, nil, fmt.Errorf("url contains a control character, space or backslash")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return location{}, nil, fmt.Errorf("url does not parse")
	}
	if u.User != nil {
		return location{}, nil, fmt.Errorf("url carries user info")
	}
	if u.Opaque != "" {
		return location{}, nil, fmt.Errorf("url is opaque (%s: without //)", u.Scheme)
	}
	l := location{scheme: strings.ToLower(u.Scheme), path: u.Path}
	switch l.scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return location{}, nil, fmt.Errorf("file url names host %q", u.Host)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return location{}, nil, fmt.Errorf("file url has a query")
		}
	case "http", "https":
		host := strings.ToLower(u.Hostname())
		if host == "" {
			return location{}, nil, fmt.Errorf("url has no host")
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[l.scheme]
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return location{}, nil, fmt.Errorf("url port %q is invalid", port)
		}
		l.host = net.JoinHostPort(host, port)
	default:
		return location{}, nil, fmt.Errorf("url scheme %q: want file, http or https", u.Scheme)
	}
	esc := strings.ToLower(u.EscapedPath())
	for _, bad := range []string{"%2f", "%5c", "%00"} {
		if strings.Contains(esc, bad) {
			return location{}, nil, fmt.Errorf("url path %s holds an encoded separator", l)
		}
	}
	if !strings.HasPrefix(l.path, "/") {
		return location{}, nil, fmt.Errorf("url path %q is not absolute", l.path)
	}
	if clean := path.Clean(l.path); clean != l.path && clean+"/" != l.path {
		return location{}, nil, fmt.Errorf("url path %s has dot segments or empty segments", l)
	}
	return l, u, nil
}
