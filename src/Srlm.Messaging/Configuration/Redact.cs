using System.Text.RegularExpressions;

namespace Srlm.Messaging.Configuration;

/// <summary>Removes credentials from connection strings before they reach a log, an error or a status line.</summary>
public static partial class Redact
{
    // scheme://user:password@host -> scheme://user:***@host ; also key=value pairs such as Password=...
    [GeneratedRegex(@"(?<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?<secret>[^@\s]*)(?<post>@)")]
    private static partial Regex UserInfo();

    [GeneratedRegex(@"(?<pre>(password|pwd|secret|token)\s*=\s*)(?<secret>[^;&\s]*)", RegexOptions.IgnoreCase)]
    private static partial Regex KeyValue();

    public static string Uri(string text)
    {
        var s = UserInfo().Replace(text, m => m.Groups["pre"].Value + "***" + m.Groups["post"].Value);
        return KeyValue().Replace(s, m => m.Groups["pre"].Value + "***");
    }
}
