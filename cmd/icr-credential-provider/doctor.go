package main

import "errors"

// cmdDoctor is not implemented yet.
func cmdDoctor(e env, args []string) int {
	return fail(e, nil, errors.New("this command is not implemented yet"))
}
