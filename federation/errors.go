package federation

import (
	"net/http"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// errBusy answers a request whose body could not get a turn to be read.
var errBusy = &matrixspec.Error{Status: http.StatusTooManyRequests, ErrCode: matrixspec.CodeLimitExceeded,
	Message: "Too many request bodies are being read at once; retry later", RetryAfterMs: 1000}

func badParam(msg string) *matrixspec.Error {
	return matrixspec.New(http.StatusBadRequest, matrixspec.CodeInvalidParam, msg)
}

func missingParam(msg string) *matrixspec.Error {
	return matrixspec.New(http.StatusBadRequest, matrixspec.CodeMissingParam, msg)
}
