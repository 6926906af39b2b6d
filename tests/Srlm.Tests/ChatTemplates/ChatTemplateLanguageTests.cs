namespace Srlm.Tests.ChatTemplates;

/// <summary>The language subset, construct by construct, against Python's jinja2 configured as transformers
/// configures it; and the constructs the interpreter refuses, each named with file:line:col.</summary>
public sealed class ChatTemplateLanguageTests
{
    private static readonly string[] Features =
    [
        // whitespace: trim_blocks, lstrip_blocks, '-' and '+' control, comments, trailing newline dropped
        "  {% if true %}\n    a\n  {% endif %}\n{# c #}\nb\n",
        "x  {%- if true -%}  y  {%- endif -%}  z",
        "  {%+ if true %}kept indent{% endif %}\n{% if true +%}\nkept newline{% endif %}",
        "{{ 'a' }}\n{{ 'b' }}  \n\n",
        "line\r\nwindows\r\n",
        // literals, operators, precedence
        "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 7 / 2 }}|{{ 4 / 2 }}|{{ 1.5 + 1 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e-7 }}",
        "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1, 2] + [3] }}|{{ (1, 'x') }}|{{ {'k': [1, 'v']} }}|{{ none }}|{{ true }}",
        "{{ 1 < 2 < 3 }}|{{ 1 == 1.0 }}|{{ 'a' in 'cat' }}|{{ 2 not in [1, 3] }}|{{ not 1 }}|{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ 'q' if false }}|{{ 'a' if 0 else 'b' if 1 else 'c' }}",
        "{{ -x|abs }}|{{ x|abs + 1 }}|{{ 'a' + 'b'|upper }}",
        // strings: escapes, methods, slicing
        "{{ 'tab\\tnew\\nq\\'\\\\' }}|{{ \"dq\" }}|{{ '  pad  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}",
        "{{ s[0] }}|{{ s[-1] }}|{{ s[1:3] }}|{{ s[::-1] }}|{{ s[:-2] }}|{{ s.upper() }}|{{ s.title() }}|{{ 'hello world'.capitalize() }}|{{ s.startswith('he') }}|{{ s.endswith(('x', 'lo')) }}|{{ s.replace('l', 'L') }}|{{ s.find('l') }}|{{ s.count('l') }}",
        "{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '-'.join(['a', 'b']) }}|{{ '  x '.lstrip() }}|{{ '  x '.rstrip() }}|{{ 'it''s' }}",
        // lists, dicts, loops
        "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }}:{{ m.role }}/{{ m['content'] }};{% endfor %}",
        "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}",
        "{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
        "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}|{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}|{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('z', 'd') }}{{ {'a': 1}.get('z') }}",
        "{% for x in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {{ loop.cycle('odd', 'even') }};{% endfor %}",
        "{{ messages[0]['role'] }}|{{ messages[-1].content }}|{{ messages[5] is defined }}|{{ messages[1:] | length }}|{{ (messages | last).role }}|{{ (messages | first).role }}",
        // scoping: set in a loop does not leak, namespace does
        "{% set found = 0 %}{% for x in [1, 2] %}{% set found = found + x %}{{ found }}{% endfor %}|{{ found }}|{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}",
        "{% if true %}{% set inner = 'visible' %}{% endif %}{{ inner }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set blk %}multi\nline{% endset %}{{ blk }}",
        "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}\n  {{ m.content }}\n{% endgeneration %}{% endif %}{% endfor %}|",
        "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }} {{ greet(name='Cy') }}",
        // filters
        "{{ '  t  ' | trim }}|{{ 'abc' | length }}|{{ messages | length }}|{{ 'MiXed' | lower }}{{ 'MiXed' | upper }}|{{ undefined_thing | default('dflt') }}|{{ '' | default('e', true) }}|{{ [1, 2] | join(', ') }}",
        "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | join(',') }}|{{ messages | map(attribute='role') | unique | list }}",
        "{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'c'] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ {'b': 1, 'a': 2} | dictsort }}|{{ [1, 2, 3] | reverse | list }}|{{ 'abc' | reverse }}|{{ {'x': 1} | items | list }}",
        "{{ '12' | int + 1 }}|{{ 'x' | int }}|{{ 3.9 | int }}|{{ '2.5' | float }}|{{ 5 | string }}|{{ 'a-b' | replace('-', '+') }}|{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'x' | safe }}",
        "{{ {'a': 'é', 'b': [1, 2.5, none, true], 'c': {'d': '\"q\"\\n'}} | tojson }}|{{ {'a': 1, 'b': [1, 2]} | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'x' | tojson }}",
        "{{ [[1, 2], [3]] | map('length') | list }}|{{ ['a', 'B'] | map('upper') | list }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3] | reject('even') | list }}|{{ 'one two  three' | wordcount }}|{{ 'ab' | center(6) }}|{{ [1, 2, 3] | batch(2) | list }}",
        // tests
        "{{ x is defined }}{{ nothing is defined }}{{ nothing is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ {} is mapping }}{{ [] is iterable }}{{ 'x' is sequence }}",
        "{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 1 is lt 2 }}{{ 'a' is in 'cat' }}{{ true is true }}{{ false is false }}{{ none is sameas none }}{{ x is not none }}",
        // functions
        "{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}|{% for i in range(3, 0, -1) %}{{ i }}{% endfor %}|{{ dict(a=1, b='x') }}|{{ strftime_now('%Y') | length }}",
        "{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools is none }}{{ documents is none }}{{ unk_token is defined }}",
        // undefined values: printing, truthiness, iteration, chained attribute on a missing key
        "[{{ nothing }}]{% if not nothing %}falsy{% endif %}{% for x in nothing %}never{% endfor %}{{ messages[0].missing is defined }}{{ (nothing or 'fallback') }}",
    ];

    private static JsonObject Context() => new()
    {
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "sys" },
            new JsonObject { ["role"] = "user", ["content"] = "hi → 世界" },
            new JsonObject { ["role"] = "assistant", ["content"] = "yo" }),
        ["s"] = "hello",
        ["x"] = -3,
        ["bos_token"] = "<s>",
        ["eos_token"] = "</s>",
        ["add_generation_prompt"] = true,
        ["tools"] = null,
        ["documents"] = null,
    };

    [Fact]
    public void Each_construct_renders_what_python_jinja2_renders()
    {
        var cases = Features.Select(f => (f, Context())).ToList();
        var expected = JinjaReference.Render(cases);
        var failures = new List<string>();
        for (var i = 0; i < Features.Length; i++)
        {
            var r = expected[i];
            Assert.True(r.Text is not null, $"the reference failed on feature {i} ({Features[i]}): {r.Error ?? r.Raised}");
            string ours;
            try
            {
                var ctx = Context().ToDictionary(kv => kv.Key, kv => (object?)kv.Value?.DeepClone());
                ours = ChatTemplate.Parse(Features[i], $"feature{i}.jinja").Render(ctx);
            }
            catch (ChatTemplateException e) { ours = "<error> " + e.Message; }
            if (ours != r.Text) failures.Add($"feature {i}: {Features[i]}\n  expected {Show(r.Text)}\n  rendered {Show(ours)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Runtime_errors_are_errors_here_too_never_a_silent_rendering()
    {
        string[] failing =
        [
            "{{ nothing.attr }}",
            "{{ nothing['k'] }}",
            "{{ 'a' + 1 }}",
            "{{ 1 / 0 }}",
            "{{ nothing + 'x' }}",
            "{{ raise_exception('custom refusal') }}",
        ];
        var expected = JinjaReference.Render(failing.Select(f => (f, Context())).ToList());
        for (var i = 0; i < failing.Length; i++)
        {
            Assert.True(expected[i].Text is null, $"the reference rendered {failing[i]}");
            var t = ChatTemplate.Parse(failing[i], "f.jinja");
            var ctx = Context().ToDictionary(kv => kv.Key, kv => (object?)kv.Value?.DeepClone());
            var e = Assert.ThrowsAny<ChatTemplateException>(() => t.Render(ctx));
            Assert.DoesNotContain('\n', e.Message);
            if (expected[i].Raised is not null) Assert.Equal(expected[i].Raised, Assert.IsType<ChatTemplateRaisedException>(e).TemplateMessage);
        }
    }

    [Theory]
    [InlineData("{% filter upper %}x{% endfilter %}", "t.jinja:1:4: the 'filter' statement is not supported")]
    [InlineData("a\n  {% include 'other.jinja' %}", "t.jinja:2:6: the 'include' statement is not supported")]
    [InlineData("{% raw %}{{ x }}{% endraw %}", "t.jinja:1:1: the 'raw' block is not supported")]
    [InlineData("{{ x | wordwrap(10) }}", "t.jinja:1:8: filter 'wordwrap' is not supported")]
    [InlineData("{% if x is escaped %}{% endif %}", "t.jinja:1:12: test 'escaped' is not supported")]
    [InlineData("{{ messages.append(1) }}", "t.jinja:1:12: method 'append' is not supported")]
    [InlineData("{{ '%s' .format(1) }}", "t.jinja:1:9: method 'format' is not supported")]
    [InlineData("{{ cycler(1, 2) }}", "t.jinja:1:4: function 'cycler' is not supported")]
    [InlineData("{% for x in y recursive %}{% endfor %}", "t.jinja:1:15: recursive for loops are not supported")]
    [InlineData("{% macro m() %}{{ caller() }}{% endmacro %}", "t.jinja:1:19: 'caller' (call blocks) is not supported")]
    [InlineData("{{ f(*args) }}", "t.jinja:1:6: '*' and '**' arguments are not supported")]
    [InlineData("{% if x %}never closed", "t.jinja:1:23: missing '{% endif %}' before the end of the template")]
    [InlineData("{{ 'unterminated }}", "t.jinja:1:4: string literal is never closed")]
    [InlineData("{% frobnicate %}", "t.jinja:1:4: unknown statement 'frobnicate'")]
    public void A_construct_the_interpreter_lacks_is_refused_with_its_name_and_position(string source, string message)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(source, "t.jinja"));
        Assert.Equal(message, e.Message);
    }

    private static string Show(string? s) => System.Text.Json.JsonSerializer.Serialize(s);
}
