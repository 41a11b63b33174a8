package provider

import (
	"slices"
	"testing"
)

func TestRegistryHostAndServes(t *testing.T) {
	hs, err := NewHostSet([]string{"registry.example.com", "127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image  string
		host   string // "" means no valid host
		served bool
	}{
		{"us.icr.io/team/app", "us.icr.io", true},
		{"us.icr.io/team/app:1.2", "us.icr.io", true},
		{"us.icr.io/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "us.icr.io", true},
		{"icr.io/team/app", "icr.io", true},
		{"private.icr.io/team/app", "private.icr.io", true},
		{"private.us.icr.io/team/app", "private.us.icr.io", true},
		{"jp2.icr.io/a/b/c/d", "jp2.icr.io", true},
		{"registry.bluemix.net/ns/app", "registry.bluemix.net", true},
		{"registry.eu-gb.bluemix.net/ns/app", "registry.eu-gb.bluemix.net", true},
		{"US.ICR.IO/team/app", "us.icr.io", true},
		{"us.icr.io:443/team/app", "us.icr.io:443", true},
		{"us.icr.io:5000/team/app", "us.icr.io:5000", false},
		{"https://us.icr.io/team/app", "us.icr.io", true},
		{"registry.example.com/x", "registry.example.com", true},
		{"127.0.0.1:5000/x", "127.0.0.1:5000", true},
		{"127.0.0.1:5001/x", "127.0.0.1:5001", false},
		{"127.0.0.1/x", "127.0.0.1", false},
		// Never served.
		{"cp.icr.io/cp/app", "cp.icr.io", false},
		{"docker.io/library/nginx", "docker.io", false},
		{"nginx", "docker.io", false},
		{"library/nginx", "docker.io", false},
		{"localhost/app", "localhost", false},
		{"us.icr.io.evil.com/team/app", "us.icr.io.evil.com", false},
		{"evilicr.io/team/app", "evilicr.io", false},
		{"icr.io.evil.com/x", "icr.io.evil.com", false},
		{"xx.icr.io/team/app", "xx.icr.io", false},
		{"private.xx.icr.io/team/app", "private.xx.icr.io", false},
		{"private.private.icr.io/x", "private.private.icr.io", false},
		{"a.us.icr.io/x", "a.us.icr.io", false},
		{"us.icr.io./team/app", "", false},
		{"user@us.icr.io/team/app", "", false},
		{"us.icr.io@evil.com/team/app", "", false},
		{"us.icr.io%2f@evil.com/x", "", false},
		{"us.іcr.io/team/app", "", false}, // Cyrillic і
		{"xn--us-icr-io/x", "docker.io", false},
		{"xn--s-icr-8ya.io/x", "xn--s-icr-8ya.io", false},
		{"us.icr.io /team", "", false},
		{"icr.io/\f0", "", false}, // any Unicode space or control character, anywhere
		{"us.icr.io/team/app\v:1", "", false},
		{"us.icr.io/team/app\u0085:1", "", false},
		{"us.icr.io/team\u00a0/app", "", false},
		{" us.icr.io/team/app\n", "us.icr.io", true}, // surrounding space (run by hand) is trimmed
		{"us.icr.io/team\x00/app", "", false},
		{"us.icr.io/team\x7f/app", "", false},
		{"us.icr.io\\team/app", "", false},
		{"u\u212a.icr.io/team/app", "", false}, // Kelvin sign: strings.ToLower makes it "k"
		{"U\u212A.ICR.IO/team/app", "", false},
		{"", "", false},
		{"*.icr.io/x", "", false},
		{"us.icr.io:99999/x", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			host, ok := RegistryHost(tt.image)
			if tt.host == "" {
				if ok {
					t.Fatalf("RegistryHost(%q) = %q, want no valid host", tt.image, host)
				}
			} else if !ok || host != tt.host {
				t.Fatalf("RegistryHost(%q) = %q, %v; want %q", tt.image, host, ok, tt.host)
			}
			if got := ok && hs.Serves(host); got != tt.served {
				t.Fatalf("served(%q) = %v, want %v", tt.image, got, tt.served)
			}
		})
	}
}

func TestDefaultHosts(t *testing.T) {
	hosts := DefaultHosts()
	for _, want := range []string{"icr.io", "private.icr.io", "us.icr.io", "private.us.icr.io", "in2.icr.io", "private.ca2.icr.io", "registry.bluemix.net", "registry.au-syd.bluemix.net"} {
		if !slices.Contains(hosts, want) {
			t.Errorf("DefaultHosts lacks %s", want)
		}
	}
	if slices.Contains(hosts, "cp.icr.io") {
		t.Error("DefaultHosts contains cp.icr.io")
	}
	if got, want := len(hosts), 2+2*12+5; got != want {
		t.Errorf("len(DefaultHosts) = %d, want %d", got, want)
	}
}

func TestNewHostSetRejects(t *testing.T) {
	for _, bad := range []string{"*.example.com", "https://r.example.com", "r.example.com/path", "user@r.example.com", "r.example.com:0", "r.example.com:x", "r.example.com.", "exa mple.com", "\u212a.example.com", "bücher.example"} {
		if _, err := NewHostSet([]string{bad}); err == nil {
			t.Errorf("NewHostSet(%q) accepted it", bad)
		}
	}
	hs, err := NewHostSet([]string{" Registry.Example.COM ", "[::1]:5000", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !hs.Serves("registry.example.com") || !hs.Serves("[::1]:5000") {
		t.Errorf("normalised extras not served: %v", hs.Hosts())
	}
	for _, h := range []string{"u\u212a.icr.io", "U\u212A.ICR.IO:443", "us.icr.io\u0131"} {
		if hs.Serves(h) {
			t.Errorf("Serves(%q): a non-ASCII host is served", h)
		}
	}
}
