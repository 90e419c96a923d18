// The Function App on a Flex Consumption plan (FC1, Linux, Node 22) with a system-assigned managed identity.
// The package is deployed to a blob container read with that identity; app settings use identity-based
// connections only. Role assignments for the identity live in rbac.bicep.
param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('azd service name (azure.yaml); azd finds the app by this tag.')
param serviceName string = 'api'

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param keyVaultUri string
param identitiesTableName string
param runsTableName string
param itemIndexTableName string

param runtimeVersion string = '22'

@description('App role a signed-in person needs to use the console (console-auth.bicep defines it).')
param consoleAllowedRole string = 'Console.Admin'

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 20

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageAccount.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'node'
        version: runtimeVersion
      }
    }
  }
}

// Every setting here is either declared in src/core/config.ts (SETTINGS) or a platform setting; the infra
// tests check both directions. Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION
// (the runtime is functionAppConfig.runtime above), so they are deliberately absent.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__blobServiceUri: storageAccount.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storageAccount.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storageAccount.properties.primaryEndpoints.table
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    SECRET_STORE: 'keyvault'
    KEY_VAULT_URL: keyVaultUri
    IDENTITIES_TABLE: identitiesTableName
    RUNS_TABLE: runsTableName
    ITEM_INDEX_TABLE: itemIndexTableName
    PUBLIC_BASE_URL: 'https://${functionApp.properties.defaultHostName}'
    CONSOLE_ALLOWED_ROLE: consoleAllowedRole
  }
}

// Deployments go through Microsoft Entra ID (azd, az, Core Tools); no publishing passwords.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output principalId string = functionApp.identity.principalId
output defaultHostName string = functionApp.properties.defaultHostName
output url string = 'https://${functionApp.properties.defaultHostName}'
