-- tokenwarden usage.lua — an Envoy Lua HTTP filter (envoy.filters.http.lua) for vLLM responses.
--
-- Reads vLLM's `usage` object from the response as it streams past — a JSON body, or the SSE chunks
-- of a streamed response (vLLM sends usage in a final chunk with stream_options.include_usage, or on
-- every request with --enable-force-include-usage) — and writes prompt_tokens and completion_tokens
-- into the dynamic metadata namespace "tokenwarden.usage", where Envoy's gRPC access log carries them
-- to tokenwarden.
--
-- It never buffers or alters the response: bodyChunks() lets every chunk through as it arrives, and
-- the script keeps only a short carry-over between chunks (a usage object split across them). The
-- last complete usage object wins (with continuous_usage_stats every chunk has a cumulative one).
-- Anything doubtful records nothing: no usage, a usage object that is incomplete or too long, or
-- counts that are not plain integers. tokenwarden then applies its rules for entries without usage.
--
-- Envoy's LuaJIT has no JSON library, so the object is found structurally: a key "usage" preceded
-- by `{` or `,` and followed by an object. Inside a JSON string every `"` is escaped, so text the
-- model generated can never look like that key.

local NAMESPACE = "tokenwarden.usage"
-- Longest usage object accepted (vLLM's is under 200 bytes, even with prompt_tokens_details).
local MAX_USAGE_BYTES = 2048
-- Bytes kept between chunks so that a key split across two chunks is still found.
local KEY_TAIL_BYTES = 64

local USAGE_KEY = '[{,]%s*"usage"%s*:%s*{'

-- The index of the closing quote of the string opening at `quote`, or nil if the text ends first.
local function string_end(text, quote)
  local i = quote + 1
  while i <= #text do
    local byte = text:byte(i)
    if byte == 92 then -- backslash: skip the escaped character
      i = i + 2
    elseif byte == 34 then
      return i
    else
      i = i + 1
    end
  end
  return nil
end

-- Walks the object opening at `open`: returns the index of its closing brace (or nil if the text
-- ends first) and its top-level text with nested objects and arrays left out.
local function walk_object(text, open)
  local depth, top, i = 0, {}, open
  while i <= #text do
    local byte = text:byte(i)
    if byte == 34 then
      local close = string_end(text, i)
      if close == nil then return nil end
      if depth == 1 then top[#top + 1] = text:sub(i, close) end
      i = close
    elseif byte == 123 or byte == 91 then -- { [
      depth = depth + 1
    elseif byte == 125 or byte == 93 then -- } ]
      depth = depth - 1
      if depth == 0 then return i, table.concat(top) end
    elseif depth == 1 then
      top[#top + 1] = string.char(byte)
    end
    i = i + 1
  end
  return nil
end

-- A plain non-negative integer value of `name` (followed by a comma or the end), else nil.
local function integer_field(flat, name)
  local key = '"' .. name .. '"%s*:%s*(%d+)%s*'
  local digits = flat:match(key .. ',') or flat:match(key .. '$')
  if digits == nil or #digits > 12 then return nil end
  return tonumber(digits)
end

-- A scanner fed chunk by chunk; remembers the last complete usage object it has seen.
local function new_scanner()
  local carry = ""
  local prompt, completion

  local function feed(chunk)
    local text = carry .. chunk
    local from = 1
    local keep = math.max(1, #text - KEY_TAIL_BYTES + 1)
    while true do
      local key_start, brace = text:find(USAGE_KEY, from)
      if key_start == nil then break end
      local close, top = walk_object(text, brace)
      if close == nil then
        -- Incomplete: keep it for the next chunk, unless it is already too long to be vLLM's.
        if #text - brace < MAX_USAGE_BYTES then keep = math.min(keep, key_start) end
        break
      end
      if close - brace < MAX_USAGE_BYTES then
        local p, c = integer_field(top, "prompt_tokens"), integer_field(top, "completion_tokens")
        if p ~= nil and c ~= nil then prompt, completion = p, c end
      end
      from = close + 1
    end
    carry = text:sub(keep)
  end

  local function result()
    return prompt, completion
  end

  return { feed = feed, result = result }
end

function envoy_on_response(response_handle)
  local scanner = new_scanner()
  for chunk in response_handle:bodyChunks() do
    scanner.feed(chunk:getBytes(0, chunk:length()))
  end
  local prompt, completion = scanner.result()
  if prompt ~= nil then
    local metadata = response_handle:streamInfo():dynamicMetadata()
    metadata:set(NAMESPACE, "prompt_tokens", prompt)
    metadata:set(NAMESPACE, "completion_tokens", completion)
  end
end
