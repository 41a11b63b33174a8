package main

import "errors"

// cmdCredentialHelper is not implemented yet.
func cmdCredentialHelper(e env, args []string) int {
	return fail(e, nil, errors.New("this command is not implemented yet"))
}
