package router

import (
	"os"
	"syscall"
)

// Crash points are fault injection for the crash tests: with EMBER_CRASH_AT
// set to one of after-start, after-act, after-complete or after-publish,
// the process kills itself with SIGKILL there, as a power cut would. Never
// set it in production.
const CrashAtEnv = "EMBER_CRASH_AT"

func crashPoint(at, here string) {
	if at != "" && at == here {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not instant; never run past the point
	}
}
