//! The OpenAPI 3.0 document of the HTTP API (`GET /openapi.json`).
//! Served by the host process (`code-exec serve`).

pub const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {
    "title": "code-exec",
    "version": "1",
    "description": "Run untrusted Python code in a sandbox and get back exactly what happened. Every route except /healthz needs `Authorization: Bearer <token>` when the server has a token. Errors are JSON {\"error\": str}."
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
      "Limits": {
        "type": "object", "additionalProperties": false,
        "properties": {
          "memory_mb": {"type": "integer", "minimum": 8, "description": "memory limit in MB (default 128)"},
          "cpu": {"type": "number", "minimum": 0.01, "description": "fraction of one core's time (default 0.5)"},
          "timeout_s": {"type": "number", "minimum": 0.001, "maximum": 86400, "description": "wall-clock timeout in seconds (default 30)"},
          "pids": {"type": "integer", "minimum": 1, "maximum": 32768, "description": "processes and threads (default 64)"},
          "max_output_bytes": {"type": "integer", "minimum": 1, "description": "bytes kept of each of stdout and stderr; more stops the run (default 1048576)"},
          "disk_mb": {"type": "integer", "minimum": 1, "maximum": 1048576, "description": "scratch space in MB: each of /work, /tmp and /dev/shm, and every file (default: half of memory_mb)"}
        }
      },
      "LiveLimits": {
        "type": "object", "additionalProperties": false,
        "properties": {
          "memory_mb": {"type": "integer", "minimum": 8},
          "cpu": {"type": "number", "minimum": 0.01},
          "pids": {"type": "integer", "minimum": 1, "maximum": 32768}
        }
      },
      "Sandbox": {"type": "string", "enum": ["native", "docker", "none"]},
      "ExecuteRequest": {
        "type": "object", "required": ["code"], "additionalProperties": false,
        "properties": {
          "code": {"type": "string"},
          "stdin": {"type": "string"},
          "sandbox": {"$ref": "#/components/schemas/Sandbox"},
          "limits": {"$ref": "#/components/schemas/Limits"}
        }
      },
      "SandboxExecuteRequest": {
        "type": "object", "required": ["code"], "additionalProperties": false,
        "properties": {"code": {"type": "string"}, "stdin": {"type": "string"}}
      },
      "CreateSandboxRequest": {
        "type": "object", "additionalProperties": false,
        "properties": {"sandbox": {"$ref": "#/components/schemas/Sandbox"}, "limits": {"$ref": "#/components/schemas/Limits"}}
      },
      "Result": {
        "type": "object",
        "description": "The same object as `code-exec run --json`.",
        "required": ["success", "verdict", "output", "stderr", "error", "error_type", "exit_code", "signal", "duration_ms", "cpu_time_ms", "peak_memory_mb", "truncated", "backend", "line", "column"],
        "properties": {
          "success": {"type": "boolean"},
          "output": {"type": "string"},
          "stderr": {"type": "string"},
          "error": {"type": "string", "nullable": true},
          "verdict": {"type": "string", "enum": ["ok", "exception", "exit", "syntax_error", "timeout", "memory_limit", "output_limit", "crash", "sandbox_error", "cancelled"], "description": "how the run ended, decided by the host from evidence the code cannot reach"},
          "error_type": {"type": "string", "nullable": true, "description": "SyntaxError, the qualified class name of an uncaught exception (the code's own text: decide on verdict), Exit, Timeout, MemoryLimit, OutputLimit, Cancelled, Crash or SandboxError"},
          "exit_code": {"type": "integer", "nullable": true},
          "signal": {"type": "string", "nullable": true},
          "duration_ms": {"type": "number"},
          "cpu_time_ms": {"type": "number"},
          "peak_memory_mb": {"type": "number"},
          "truncated": {"type": "boolean"},
          "backend": {"type": "string"},
          "line": {"type": "integer", "nullable": true},
          "column": {"type": "integer", "nullable": true},
          "limits_enforced": {"type": "object", "additionalProperties": {"type": "string"}}
        }
      },
      "Usage": {
        "type": "object", "required": ["cpu_percent", "memory_mb", "peak_memory_mb", "cpu_time_ms", "pids"],
        "properties": {
          "cpu_percent": {"type": "number"}, "memory_mb": {"type": "number"}, "peak_memory_mb": {"type": "number"},
          "cpu_time_ms": {"type": "number"}, "pids": {"type": "integer"}
        }
      },
      "LimitsInForce": {
        "type": "object", "required": ["memory_mb", "cpu", "pids", "timeout_s", "max_output_bytes", "disk_mb"],
        "properties": {
          "memory_mb": {"type": "integer"}, "cpu": {"type": "number"}, "pids": {"type": "integer"},
          "timeout_s": {"type": "number"}, "max_output_bytes": {"type": "integer"},
          "disk_mb": {"type": "integer", "description": "scratch space; /work keeps the size it was created with"}
        }
      }
    },
    "responses": {
      "BadRequest": {"description": "malformed JSON, wrong types or invalid limits (the message names the field)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unauthorized": {"description": "missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "NotFound": {"description": "no such sandbox", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "TooLarge": {"description": "the body is over the server's limit", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Busy": {"description": "the queue is full; retry after the Retry-After header's seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unavailable": {"description": "the backend cannot run here", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "security": [{"bearer": []}],
  "paths": {
    "/healthz": {"get": {"security": [], "summary": "liveness", "responses": {"200": {"description": "up"}}}},
    "/metrics": {"get": {"summary": "Prometheus text metrics", "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI document"}, "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/v1/execute": {"post": {
      "summary": "validate and run code once",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecuteRequest"}}}},
      "responses": {
        "200": {"description": "the result, whatever the code did", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}},
        "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"},
        "413": {"$ref": "#/components/responses/TooLarge"}, "429": {"$ref": "#/components/responses/Busy"},
        "503": {"$ref": "#/components/responses/Unavailable"}
      }}},
    "/v1/sandboxes": {"post": {
      "summary": "create a persistent sandbox",
      "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateSandboxRequest"}}}},
      "responses": {
        "201": {"description": "created", "content": {"application/json": {"schema": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}}},
        "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"},
        "413": {"$ref": "#/components/responses/TooLarge"}, "503": {"$ref": "#/components/responses/Unavailable"}
      }}},
    "/v1/sandboxes/{id}/execute": {"post": {
      "summary": "run code in a persistent sandbox (files in its work directory persist)",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SandboxExecuteRequest"}}}},
      "responses": {
        "200": {"description": "the result", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}},
        "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": {"$ref": "#/components/responses/NotFound"}, "413": {"$ref": "#/components/responses/TooLarge"},
        "429": {"$ref": "#/components/responses/Busy"}
      }}},
    "/v1/sandboxes/{id}/usage": {"get": {
      "summary": "resource usage of a persistent sandbox",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {
        "200": {"description": "usage", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Usage"}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}
      }}},
    "/v1/sandboxes/{id}/limits": {"patch": {
      "summary": "change memory, CPU and pids limits live",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LiveLimits"}}}},
      "responses": {
        "200": {"description": "the limits now in force", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LimitsInForce"}}}},
        "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": {"$ref": "#/components/responses/NotFound"},
        "409": {"description": "the sandbox refused the change (e.g. memory below what it uses); nothing changed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
      }}},
    "/v1/sandboxes/{id}": {"delete": {
      "summary": "remove a persistent sandbox",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"204": {"description": "removed"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}}
    }}
  }
}
"##;

#[cfg(test)]
mod tests {
    #[test]
    fn is_valid_json_naming_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/execute",
            "/v1/sandboxes",
            "/v1/sandboxes/{id}/execute",
            "/v1/sandboxes/{id}/usage",
            "/v1/sandboxes/{id}/limits",
            "/v1/sandboxes/{id}",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
    }

    #[test]
    fn lists_exactly_the_verdicts() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let listed: Vec<&str> = schemas
            .values()
            .find_map(|s| s["properties"]["verdict"]["enum"].as_array())
            .expect("a schema with a verdict")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let verdicts: Vec<&str> = crate::result::Verdict::ALL
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(listed, verdicts);
    }
}
