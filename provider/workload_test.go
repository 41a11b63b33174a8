package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

func TestWorkloadProfile(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		token   string
		want    iam.Profile
		ok      bool
		wantErr string
	}{
		{"no annotations", nil, "sa", iam.Profile{}, false, ""},
		{"unrelated annotation", map[string]string{"x": "y"}, "sa", iam.Profile{}, false, ""},
		{"profile id", map[string]string{AnnotationProfileID: "Profile-1"}, "sa", iam.Profile{ID: "Profile-1"}, true, ""},
		{"profile name", map[string]string{AnnotationProfileName: " pullers "}, "sa", iam.Profile{Name: "pullers"}, true, ""},
		{"empty value", map[string]string{AnnotationProfileID: " "}, "sa", iam.Profile{}, false, ""},
		{"both", map[string]string{AnnotationProfileID: "Profile-1", AnnotationProfileName: "n"}, "sa", iam.Profile{}, false, "both"},
		{"no token", map[string]string{AnnotationProfileID: "Profile-1"}, "", iam.Profile{}, false, "tokenAttributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok, err := WorkloadProfile(Request{ServiceAccountAnnotations: tt.ann, ServiceAccountToken: tt.token})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.ok || p != tt.want {
				t.Fatalf("got %+v, %v, %v; want %+v, %v", p, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func TestRouterNeverFallsBack(t *testing.T) {
	nodeCalls := 0
	boom := errors.New("IAM rejected the exchange")
	r := Router{
		Node: func(ctx context.Context) (iam.Token, error) {
			nodeCalls++
			return iam.Token{AccessToken: "node", Expiry: time.Now().Add(time.Hour)}, nil
		},
		Workload: func(ctx context.Context, p iam.Profile, sa string) (iam.Token, error) {
			if p.ID == "good" {
				return iam.Token{AccessToken: "workload:" + sa}, nil
			}
			return iam.Token{}, boom
		},
	}
	ann := func(id string) map[string]string { return map[string]string{AnnotationProfileID: id} }
	if tok, err := r.Token(context.Background(), Request{ServiceAccountToken: "sa1", ServiceAccountAnnotations: ann("good")}); err != nil || tok.AccessToken != "workload:sa1" {
		t.Fatalf("annotated: %v %v", tok.AccessToken, err)
	}
	if _, err := r.Token(context.Background(), Request{ServiceAccountToken: "sa1", ServiceAccountAnnotations: ann("bad")}); !errors.Is(err, boom) {
		t.Fatalf("failed exchange: err = %v", err)
	}
	if nodeCalls != 0 {
		t.Fatal("the node identity was used for an annotated service account")
	}
	if tok, err := r.Token(context.Background(), Request{ServiceAccountToken: "sa1"}); err != nil || tok.AccessToken != "node" {
		t.Fatalf("un-annotated: %v %v", tok.AccessToken, err)
	}
}
