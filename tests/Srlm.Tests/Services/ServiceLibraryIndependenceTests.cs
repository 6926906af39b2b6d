using Srlm.ServiceKit;
using Srlm.Tests.Tasks;

namespace Srlm.Tests.Services;

/// <summary>Each service library stands on the building blocks (Contracts, Storage, Messaging, Model, Training,
/// ServiceKit) and never on another service's library, so a service can be changed, deployed and scaled alone.</summary>
public class ServiceLibraryIndependenceTests
{
    private static readonly string[] ServiceLibraries = ["Srlm.Generator", "Srlm.Judge", "Srlm.PairBuilder", "Srlm.Trainer"];

    [Fact]
    public void No_service_project_references_another_service_project_even_transitively()
    {
        var services = Path.Combine(ServiceIndependenceTests.RepoRoot(), "services");
        var serviceProjects = Directory.GetFiles(services, "*.csproj", SearchOption.AllDirectories).Select(Path.GetFullPath).ToList();
        Assert.Equal(8, serviceProjects.Count); // a library and a host for each of the four services
        foreach (var name in ServiceLibraries)
        {
            var own = serviceProjects.Single(p => Path.GetFileName(p) == name + ".csproj");
            var reached = ServiceIndependenceTests.ProjectClosure(own).Where(p => p != own).ToList();
            var others = reached.Intersect(serviceProjects).ToList();
            Assert.True(others.Count == 0, $"{name} references {string.Join(", ", others.Select(Path.GetFileName))}");
        }
    }

    [Fact]
    public void No_service_assembly_references_another_service_assembly()
    {
        foreach (var name in ServiceLibraries)
        {
            var refs = Assembly.Load(new AssemblyName(name)).GetReferencedAssemblies().Select(a => a.Name).ToList();
            Assert.Empty(refs.Intersect(ServiceLibraries.Where(n => n != name)));
        }
    }

    [Fact]
    public void Every_command_goes_to_the_queue_its_consumer_listens_on()
    {
        var formatter = SrlmBusExtensions.EndpointNameFormatter;
        Assert.Equal(formatter.Consumer<Srlm.Generator.GeneratePromptsConsumer>(), Endpoints.NameOf<GeneratePrompts>());
        Assert.Equal(formatter.Consumer<Srlm.Generator.GenerateResponsesConsumer>(), Endpoints.NameOf<GenerateResponses>());
        Assert.Equal(formatter.Consumer<Srlm.Generator.EvaluateCheckpointConsumer>(), Endpoints.NameOf<EvaluateCheckpoint>());
        Assert.Equal(formatter.Consumer<Srlm.Judge.JudgeCandidateConsumer>(), Endpoints.NameOf<JudgeCandidate>());
        Assert.Equal("judge-candidate", Endpoints.NameOf<JudgeCandidate>());
    }
}
