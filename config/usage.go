package config

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
)

// FlagUsages renders fs's flags for --help as kubelet-ecosystem tools do:
// "--name type   usage (default x)", a boolean flag without a type, and
// without pflag's "[=true|false]".
func FlagUsages(fs *pflag.FlagSet) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		name := "      --" + f.Name
		if f.Shorthand != "" {
			name = "  -" + f.Shorthand + ", --" + f.Name
		}
		varname, usage := pflag.UnquoteUsage(f)
		if f.Value.Type() != "bool" && varname != "" {
			name += " " + varname
		}
		if d := f.DefValue; d != "" && d != "false" && d != "[]" && d != "0" && d != "0s" {
			if f.Value.Type() == "string" {
				d = fmt.Sprintf("%q", d)
			}
			usage += " (default " + d + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, usage)
	})
	tw.Flush()
	return b.String()
}
