// Package logging builds the shim's zap logger and routes gomatrixserverlib's logrus output into it.
package logging

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to w at level (debug, info, warn, error) in format (json, console).
func New(w io.Writer, level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	// Lock: loggers are shared across goroutines and w need not be safe for concurrent writes.
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}

// BridgeLogrus sends logrus's standard logger, which gomatrixserverlib uses, to z under the name
// "gomatrixserverlib". Its info messages (such as every rejected signature) are demoted to debug.
func BridgeLogrus(z *zap.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.DebugLevel)
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(&logrusHook{z: z.Named("gomatrixserverlib")})
}

type logrusHook struct{ z *zap.Logger }

func (h *logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *logrusHook) Fire(e *logrus.Entry) error {
	lvl := zapcore.DebugLevel
	switch e.Level {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		lvl = zapcore.ErrorLevel
	case logrus.WarnLevel:
		lvl = zapcore.WarnLevel
	}
	if ce := h.z.Check(lvl, e.Message); ce != nil {
		fields := make([]zap.Field, 0, len(e.Data))
		for k, v := range e.Data {
			fields = append(fields, zap.Any(k, v))
		}
		ce.Write(fields...)
	}
	return nil
}
