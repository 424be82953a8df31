-- troupe.html: HTML escaping in C.
local html = require "troupe.html"

describe("troupe.html.escape", function()
  it("escapes the five characters of text and quoted attributes", function()
    assert.equal("&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;",
                 html.escape([[<a href="x">Tom & Jerry's</a>]]))
    assert.equal("&amp;&amp;", html.escape("&&"))
    assert.equal("&lt;", html.escape("<"))
    assert.equal("x&gt;", html.escape("x>"))
  end)

  it("passes everything else through, UTF-8 and zero bytes included", function()
    assert.equal("フレームワークのベンチマーク", html.escape("フレームワークのベンチマーク"))
    assert.equal("a\0&lt;b", html.escape("a\0<b"))
    assert.equal("", html.escape(""))
    local s = "nothing to escape here"
    assert.equal(s, html.escape(s))
  end)

  it("takes numbers as strings and refuses other types", function()
    assert.equal("12", html.escape(12))
    assert.equal("1.5", html.escape(1.5))
    assert.has_error(function() html.escape(nil) end)
    assert.has_error(function() html.escape({}) end)
  end)

  it("agrees with a reference escaper on random strings", function()
    local map = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
    local alphabet = "ab&<>\"' \0\xe3\x83"
    for _ = 1, 500 do
      local t = {}
      for i = 1, math.random(0, 40) do
        local k = math.random(#alphabet)
        t[i] = alphabet:sub(k, k)
      end
      local s = table.concat(t)
      assert.equal((s:gsub("[&<>\"']", map)), html.escape(s))
    end
  end)
end)
