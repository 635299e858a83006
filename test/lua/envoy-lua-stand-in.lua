-- Stands in for the parts of Envoy's Lua HTTP filter API that envoy/usage.lua calls:
-- response_handle:bodyChunks() (an iterator of buffers with :length() and :getBytes(index, length)),
-- and response_handle:streamInfo():dynamicMetadata():set(namespace, key, value).
-- Input on stdin, any number of responses: a line "response" starts one, then frames
-- "<byte count>\n<bytes>", one per body chunk as Envoy would deliver them.
-- Output: one line per response: the metadata set, as "namespace.key=value" pairs, or "none".
local script = arg[1]
local input = io.read("*a")

local responses, at = {}, 1
while at <= #input do
  local newline = input:find("\n", at, true)
  local line = input:sub(at, newline - 1)
  if line == "response" then
    responses[#responses + 1] = {}
    at = newline + 1
  else
    local size = tonumber(line)
    local chunks = responses[#responses]
    chunks[#chunks + 1] = input:sub(newline + 1, newline + size)
    at = newline + size + 1
  end
end

local function buffer(bytes)
  return {
    length = function() return #bytes end,
    getBytes = function(_, index, length) return bytes:sub(index + 1, index + length) end,
  }
end

local function handle_for(chunks, set)
  return {
    bodyChunks = function()
      local i = 0
      return function()
        i = i + 1
        if chunks[i] ~= nil then return buffer(chunks[i]) end
      end
    end,
    streamInfo = function()
      return {
        dynamicMetadata = function()
          return { set = function(_, namespace, key, value) set[#set + 1] = namespace .. "." .. key .. "=" .. tostring(value) end }
        end,
      }
    end,
  }
end

dofile(script)
for _, chunks in ipairs(responses) do
  local set = {}
  envoy_on_response(handle_for(chunks, set))
  print(#set == 0 and "none" or table.concat(set, " "))
end
