package main

import "errors"

// cmdInstall is not implemented yet.
func cmdInstall(e env, args []string) int {
	return fail(e, nil, errors.New("this command is not implemented yet"))
}
